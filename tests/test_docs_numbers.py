"""Numbers the docs quote come from JSON records committed in ``benchmarks/results``.

- The demo (README.md, docs/visualisation.md): ``demo_stcn_cpu.json`` is the ``demo.json`` a ``make demo`` run wrote
  (plus a ``provenance`` key); its settings are today's demo defaults, and every score, time and size the docs
  quote is formatted from it here.
- docs/benchmarks.md: the tables of the learning-speed study and of the ablations are rendered again from their
  JSON with the benchmarks' own report functions (rows verbatim, or, for the hand-condensed fine-tune tables, every
  number of a row in order among the rendered row's numbers); the 45-minute tables and the 10-minute XMem sentence
  are read off the runs' curves.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from corrvos.demo.pipeline import DemoSettings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from ablation_report import format_markdown  # noqa: E402
from learning_speed_report import at_minutes, format_table  # noqa: E402

DEMO = "demo_stcn_cpu.json"
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _record(name: str) -> dict[str, Any]:
    return json.loads((REPO / "benchmarks" / "results" / name).read_text(encoding="utf-8"))


def _flat(rel: str) -> str:
    """A doc's text with every run of whitespace made one space (paragraphs wrap anywhere)."""
    return " ".join((REPO / rel).read_text(encoding="utf-8").split())


def _quoted(rel: str, phrase: str) -> None:
    assert phrase in _flat(rel), f"{rel} does not quote {phrase!r} (computed from the committed JSON)"


def _minutes(text: str) -> int:
    """'6 min 45 s' -> 405."""
    m = re.fullmatch(r"(\d+) min (\d+) s", text)
    assert m, text
    return 60 * int(m.group(1)) + int(m.group(2))


# --- the demo ---------------------------------------------------------------------------------------------------


def test_demo_record_holds_todays_default_settings() -> None:
    settings = _record(DEMO)["settings"]
    defaults = asdict(DemoSettings())
    for key, value in defaults.items():
        if key in ("out", "progress"):
            continue
        assert settings[key] == (list(value) if isinstance(value, tuple) else value), key


def test_demo_numbers_in_the_docs_come_from_the_record() -> None:
    record = _record(DEMO)
    prov, settings, seconds = record["provenance"], record["settings"], record["seconds"]
    none, paper = record["scores"]["none"], record["scores"]["paper"]
    copy, empty = record["floors"]["copy_first_frame"], record["floors"]["empty_after_first_frame"]
    vis = {name: row["visible"]["JF"] for name, row in (("none", none), ("paper", paper), ("copy", copy))}
    diffs = [paper["per_sequence_visible"][v] - none["per_sequence_visible"][v] for v in none["per_sequence_visible"]]
    assert len(diffs) == settings["eval_sequences"]
    h, w = settings["size"]
    page = "docs/visualisation.md"
    for phrase in (
        f"synthetic training videos ({settings['train_sequences']} × {settings['train_frames']} frames at {h}×{w},",
        f"held-out evaluation videos ({settings['eval_sequences']} × {settings['eval_frames']} frames,",
        f"`corrvos.demo.recipes.cpu_train_config`, {settings['steps']} steps;",
        f"commit {prov['commit']}",
        "benchmarks/results/demo_stcn_cpu.json",
        f"training {seconds['train_none']:.0f} s and {seconds['train_paper']:.0f} s side by side, segmentation "
        f"{seconds['infer']:.0f} s, figures {seconds['figures']:.0f} s",
        f"Visible-cell J&F: {vis['none']:.3f} (L_SEG only) and {vis['paper']:.3f} (with the losses), against "
        f"{vis['copy']:.3f} for copying the first frame (twice that: {2 * vis['copy']:.3f}) and "
        f"{empty['visible']['JF']:g} for the empty floor; all-cell J&F {none['all_cells']['JF']:.3f} and "
        f"{paper['all_cells']['JF']:.3f}.",
        f"{settings['eval_sequences']} videos (per video from {min(diffs):+.3f} to {max(diffs):+.3f})",
    ):
        _quoted(page, phrase)
    _quoted(
        "README.md", f"visible-cell J&F {vis['none']:.3f} and {vis['paper']:.3f} against {vis['copy']:.3f} for copying"
    )
    # the wall time of `make demo` (the record's total plus the CLI's start) and the folder size, as recorded
    wall, size = re.fullmatch(
        r"(\d+ min \d+ s) after the install; the folder held (\d+) MB", prov["make_demo_wall"]
    ).groups()
    assert seconds["total"] <= _minutes(wall) <= seconds["total"] + 30
    _quoted(page, f"`make demo` took {wall} after the install")
    _quoted(page, f"the folder holds {size} MB")
    _quoted("README.md", f"{wall} on 2 CPU cores after the install")


# --- docs/benchmarks.md -----------------------------------------------------------------------------------------

BENCHMARKS = "docs/benchmarks.md"


def _table_after(anchor: str) -> list[str]:
    """The body rows (header and rule dropped) of the first Markdown table after the only occurrence of
    ``anchor`` in docs/benchmarks.md."""
    text = (REPO / BENCHMARKS).read_text(encoding="utf-8")
    assert text.count(anchor) == 1, f"{BENCHMARKS}: {anchor!r} should occur once"
    lines = text[text.index(anchor) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start + 2 : end]


def _rows(markdown: str) -> list[str]:
    """Body rows of rendered Markdown tables (header rows and rules dropped)."""
    lines = markdown.splitlines()
    return [
        line
        for i, line in enumerate(lines)
        if line.startswith("| ") and not (i + 1 < len(lines) and lines[i + 1].startswith("|---"))
    ]


def _first_cell(row: str) -> str:
    return row.strip("|").split("|")[0].strip()


def _numbers(text: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(text.replace("−", "-"))]


def _in_order(part: list[float], whole: list[float]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


@pytest.mark.parametrize(
    ("anchor", "name"),
    [
        ("STCN (`like` floor: copy 12.4", "learning_speed_study_stcn.json"),
        ("XMem (`cpu (4-min run)` is the final recipe", "learning_speed_study_xmem.json"),
    ],
)
def test_learning_speed_tables_render_from_their_json(anchor: str, name: str) -> None:
    want = _rows(format_table(_record(name), markdown=True))
    assert sorted(_table_after(anchor)) == sorted(want)


@pytest.mark.parametrize(
    ("anchor", "name"),
    [
        ("`benchmarks/results/ablation_cpu.json`):", "ablation_cpu.json"),
        ("`benchmarks/results/ablation_cpu_xmem.json`):", "ablation_cpu_xmem.json"),
        ("`benchmarks/results/ablation_semi_cpu.json`):", "ablation_semi_cpu.json"),
    ],
)
def test_ablation_tables_render_from_their_json(anchor: str, name: str) -> None:
    rendered = format_markdown(_record(name))
    assert _table_after(anchor) == _rows(rendered)
    caption = next(line for line in rendered.splitlines() if line.strip())  # "STCN, 100 steps, 3 seeds; ... floors"
    assert caption in (REPO / BENCHMARKS).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("anchor", "name"),
    [
        ("### Fine-tune protocol with the CPU recipe", "ablation_finetune_cpu.json"),
        ("XMem, the same protocol (480 L_SEG steps", "ablation_finetune_cpu_xmem.json"),
    ],
)
def test_fine_tune_tables_quote_their_json(anchor: str, name: str) -> None:
    """The docs condense these tables by hand (no t intervals, fg ratio or s/step): every number of a doc row must
    appear, in order, in the row rendered from the JSON for the same variant."""
    rendered = {_first_cell(row): row for row in _rows(format_markdown(_record(name)))}
    doc = _table_after(anchor)
    assert len(doc) == len(rendered)
    for row in doc:
        variant = _first_cell(row).split()[0]  # "`paper` (+ L_PCL + L_OCL)" -> "`paper`"
        assert _in_order(_numbers(row.split("|", 2)[2]), _numbers(rendered[variant])), row


def test_fine_tune_floors_sentence() -> None:
    ref = _record("ablation_finetune_cpu.json")["reference"]
    copy, empty = ref["copy_first_frame"], ref["empty"]

    def part(r: dict[str, Any]) -> str:
        return f"{100 * r['jf']:.1f} (crossing {100 * r['crossing']['JF']:.1f}, visible {100 * r['visible']['JF']:.1f})"

    _quoted(
        BENCHMARKS, f"Floors: copying the first frame {part(copy)}; predicting nothing after frame 0 {part(empty)}."
    )


@pytest.mark.parametrize(
    ("anchor", "name"),
    [
        ("STCN (`benchmarks/results/learning_speed_long_stcn.json`, `.png`):", "learning_speed_long_stcn.json"),
        ("XMem (`learning_speed_long_xmem.json`, `.png`;", "learning_speed_long_xmem.json"),
    ],
)
def test_45_minute_tables_read_off_the_curves(anchor: str, name: str) -> None:
    (run,) = _record(name)["runs"]
    text = (REPO / BENCHMARKS).read_text(encoding="utf-8")
    header = text[text.index(anchor) :].splitlines()[2]  # | minutes | 5 | 10 | ...
    minutes = [float(c) for c in header.strip("|").split("|")[1:]]
    assert minutes[-1] == pytest.approx(run["curve"][-1]["train_seconds"] / 60, abs=0.5)  # the last column: the end
    for row in _table_after(anchor):
        label, *cells = (c.strip() for c in row.strip("|").split("|"))
        set_name = label.removesuffix(" visible")
        assert cells == [f"{100 * at_minutes(run, m, set_name):.1f}" for m in minutes], row


def test_ten_minute_stcn_end_sentence() -> None:
    (run,) = [r for r in _record("learning_speed_study_stcn.json")["runs"] if r["recipe"] == "cpu" and r["seed"] == 0]
    end = run["curve"][-1]
    _quoted(
        BENCHMARKS,
        f"(STCN, seed 0 of the study's `cpu` row: {100 * end['like']['visible']:.1f} and "
        f"{100 * end['large']['visible']:.1f} at its end)",
    )


def test_xmem_10_minute_two_thread_sentence() -> None:
    (run,) = _record("learning_speed_xmem_10min_2threads.json")["runs"]

    def both(m: float) -> str:
        return f"{100 * at_minutes(run, m, 'like'):.1f} / {100 * at_minutes(run, m, 'large'):.1f}"

    end = run["curve"][-1]["train_seconds"] / 60
    _quoted(BENCHMARKS, f"`--threads 2`, {run['steps_done']} steps;")
    _quoted(BENCHMARKS, f"scored visible J&F {both(4)} at 4 minutes, {both(6)} at 6")
    _quoted(BENCHMARKS, f"{both(8)} at 8 and **{both(end)} at its end**")


def test_eval_speed_table_rows_come_from_its_json() -> None:
    record = _record("eval_speed.json")
    doc = _table_after("## `benchmarks/eval_speed.py`: J&F evaluation speed")
    for row, res in zip(doc, record["results"], strict=False):  # the first rows: the eval_speed.py defaults
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:] == [
            res["evaluator"],
            f"{res['seconds']:.2f}",
            f"{res['frames_per_second']:.1f}",
            f"{res['speedup_vs_official']:.1f}x",
        ], row
    h, w = record["size"]
    _quoted(
        BENCHMARKS,
        f"`eval_speed.py` defaults: {record['sequences']} seq. × {record['frames_per_sequence']} frames, {h}×{w}, "
        f"{record['evaluated_frames']} scored frames, {record['objects']} objects",
    )


def test_long_video_table_comes_from_its_json() -> None:
    records = {(r["model"], r["length"]): r for r in _record("long_video_cpu.json")["records"]}
    doc = _table_after("## `benchmarks/long_video.py`: memory and speed on long videos")
    assert len(doc) == len(records)
    for row in doc:
        model, frames, fps, elements, allocated, rss = (c.strip() for c in row.strip("|").split("|"))
        rec = records[(model.lower(), int(frames))]
        assert [fps, elements, allocated] == [
            f"{rec['fps']:.1f}",
            f"{rec['peak_elements']:,}".replace(",", " "),
            f"{rec['peak_memory_mib']:.1f}",
        ], row
        assert rss.split()[0] == f"{rec['max_rss_mib']:.0f}", row
        growth = re.search(r"\(\+([\d.]+) %\)", rss)  # against the same model's shortest video
        if growth:
            first = records[(model.lower(), min(length for m, length in records if m == model.lower()))]
            digits = len(growth.group(1).partition(".")[2])
            assert float(growth.group(1)) == round(100 * (rec["max_rss_mib"] / first["max_rss_mib"] - 1), digits), row


def test_readme_summary_numbers_come_from_the_benchmark_records() -> None:
    from learning_speed_report import recipe_summary

    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    def signed(x: float) -> str:
        return f"{100 * x:+.1f}"

    study = _record("learning_speed_study_stcn.json")
    cpu = recipe_summary(study)["cpu"]
    sets = study["data"]["eval"]
    size = {name: "×".join(map(str, sets[name]["size"])) for name in ("like", "large")}
    (like_mean, like_std), (large_mean, large_std) = cpu["like_visible@10"], cpu["large_visible@10"]
    floors = [pct(sets[name]["floors"]["copy_first_frame"]["visible"]) for name in ("like", "large")]
    _quoted(
        "README.md",
        f"STCN after 10 minutes on one core: visible-cell J&F {pct(like_mean)} ± {pct(like_std)} ({size['like']}) and "
        f"{pct(large_mean)} ± {pct(large_std)} ({size['large']}; {cpu['seeds']} seeds) against floors of {floors[0]} "
        f"and {floors[1]};",
    )
    ends = {}
    for arch in ("stcn", "xmem"):
        (run,) = _record(f"learning_speed_long_{arch}.json")["runs"]
        ends[arch] = f"{pct(run['curve'][-1]['like']['visible'])} / {pct(run['curve'][-1]['large']['visible'])}"
    _quoted("README.md", f"over 45 minutes (STCN {ends['stcn']}, XMem {ends['xmem']})")
    (run,) = _record("learning_speed_xmem_10min_2threads.json")["runs"]
    end = run["curve"][-1]
    _quoted(
        "README.md", f"a 10-minute run on both cores: {pct(end['like']['visible'])} / {pct(end['large']['visible'])}"
    )

    stcn = _record("ablation_finetune_cpu.json")["summary"]["stcn"]
    xmem = _record("ablation_finetune_cpu_xmem.json")["summary"]["xmem"]

    def interval(d: dict[str, Any]) -> str:
        return f"[{signed(d['ci_low'])}, {signed(d['ci_high'])}]"

    paper_jf, vis, cross = stcn["paper"]["diff_jf"], xmem["paper"]["diff_visible_jf"], xmem["paper"]["diff_crossing_jf"]
    assert vis["mean"] < 0 and cross["mean"] < 0  # the README says "lowered"
    _quoted("README.md", f"({signed(paper_jf['mean'])} J&F [95 % interval {interval(paper_jf)[1:-1]}])")
    _quoted(
        "README.md",
        f"lowered J&F where the object is visible by {pct(-vis['mean'])} [{signed(vis['ci_low'])}, "
        f"{signed(vis['ci_high'])}] (and on the crossing frames by {pct(-cross['mean'])})",
    )
    official = [stcn["official"]["diff_jf"], xmem["official"]["diff_jf"]]
    _quoted(
        "README.md",
        f"neutral on both ({signed(official[0]['mean'])} {interval(official[0])}, {signed(official[1]['mean'])} "
        f"{interval(official[1])})",
    )

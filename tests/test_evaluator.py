"""The DAVIS evaluator end to end on tiny DAVIS trees built in tmp_path.

Expected numbers come from an independent computation in this file (plain J from pixel counts, statistics
from their definitions); when the official toolkit has been exported to .ref/davis2017-evaluation (it is never
committed), its CSVs are compared byte for byte.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corrvos.cli import main as cli_main
from corrvos.data.io import write_label
from corrvos.errors import ConfigError, DataError
from corrvos.evaluation import evaluate_davis, format_tables
from corrvos.evaluation.tables import format_csv

OFFICIAL = Path(__file__).resolve().parents[1] / ".ref" / "davis2017-evaluation"
NL = os.linesep


def make_tree(
    tmp: Path, seqs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], *, year: str = "2017", set_name: str = "val"
) -> tuple[Path, Path]:
    """DAVIS root and results folder with GT and predicted label maps (first and last predictions included)."""
    root, res = tmp / "DAVIS", tmp / "res"
    for name, (gts, preds) in seqs.items():
        for t, (g, p) in enumerate(zip(gts, preds, strict=True)):
            write_label(root / "Annotations" / "480p" / name / f"{t:05d}.png", g)
            write_label(res / name / f"{t:05d}.png", p)
            jpg = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            jpg.write_bytes(b"")
    (root / "ImageSets" / year).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / year / f"{set_name}.txt").write_text("\n".join(seqs) + "\n")
    return root, res


def moving_squares(h: int, w: int, n_obj: int, t_len: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for t in range(t_len):
        g, p = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
        for k in range(1, n_obj + 1):
            y, x = 2 + 3 * k, 2 + 4 * k + t
            g[y : y + 6, x : x + 7] = k
            dy, dx = rng.integers(-2, 3, 2)
            if rng.random() < 0.85:
                p[max(y + dy, 0) : y + dy + 6, max(x + dx, 0) : x + dx + 7] = k
        gts.append(g)
        preds.append(p)
    return gts, preds


def plain_j(pred: np.ndarray, gt: np.ndarray) -> float:
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def test_gt_as_prediction_scores_one(tmp_path) -> None:
    gts, _ = moving_squares(24, 40, 2, 6, 0)
    root, res = make_tree(tmp_path, {"s1": (gts, gts), "s2": (gts[:4], gts[:4])})
    result = evaluate_davis(root, res, progress=False)
    assert result.object_names == ["s1_1", "s1_2", "s2_1", "s2_2"]
    assert (res / "global_results-val.csv").read_text() == (
        f"J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay{NL}1.000,1.000,1.000,0.000,1.000,1.000,0.000{NL}"
    )
    assert (res / "per-sequence_results-val.csv").read_text() == NL.join(
        ["Sequence,J-Mean,F-Mean"] + [f"{n},1.000,1.000" for n in result.object_names]
    ) + NL
    text = format_tables(result)
    assert "Global results for val" in text and text.splitlines()[-1].split() == ["s2_2", "1.000", "1.000"]


def test_known_sequence_matches_independent_computation(tmp_path) -> None:
    gts, preds = moving_squares(30, 50, 3, 9, 1)
    preds[4][preds[4] == 2] = 0  # object 2 missed in one frame
    root, res = make_tree(tmp_path, {"seq": (gts, preds)})
    result = evaluate_davis(root, res, progress=False)
    assert result.sequences[0].frame_ids == [f"{t:05d}" for t in range(1, 8)]  # first and last not scored
    for k in range(1, 4):
        j = np.array([plain_j(preds[t] == k, gts[t] == k) for t in range(1, 8)])
        assert np.array_equal(result.sequences[0].j[k - 1], j)
        mean, recall = j.mean(), np.mean(j > 0.5)
        decay = np.mean(j[0:3]) - np.mean(j[5:7])  # n = 7: ids [0, 2, 3, 5, 6]
        assert result.j_stats[k - 1, 0] == pytest.approx(mean, abs=1e-15)
        assert result.j_stats[k - 1, 1] == recall
        assert result.j_stats[k - 1, 2] == pytest.approx(decay, abs=1e-15)
    jm, fm = result.j_stats[:, 0].mean(), result.f_stats[:, 0].mean()
    assert result.global_scores["J&F-Mean"] == pytest.approx((jm + fm) / 2, abs=1e-15)
    line = (res / "global_results-val.csv").read_text().splitlines()[1].split(",")
    assert line[1] == "%.3f" % result.global_scores["J-Mean"]  # noqa: UP031
    frames = (res / "corrvos_per-frame-full-val.csv").read_text().splitlines()
    assert len(frames) == 1 + 3 * 7 and frames[1].startswith("seq,1,00001,")


def test_phantom_and_missing_ids_follow_the_official_rules(tmp_path, caplog) -> None:
    gts, preds = moving_squares(24, 40, 3, 5, 2)
    for g in gts:
        g[g == 2] = 0  # id 2 never in the GT: a phantom object below N = 3
    preds = [np.where(p == 3, 0, np.where(p == 2, 0, p)) for p in preds]  # objects 2 and 3 never predicted
    root, res = make_tree(tmp_path, {"ph": (gts, preds)})
    result = evaluate_davis(root, res, progress=False)
    assert result.object_names == ["ph_1", "ph_2", "ph_3"]
    assert np.all(result.sequences[0].j[1] == 1.0) and np.all(result.sequences[0].f[1] == 1.0)  # phantom scores 1
    assert np.all(result.sequences[0].j[2] == 0.0)  # zero padding: never predicted
    assert any("never appear" in w for w in result.warnings)


def test_workers_give_identical_results(tmp_path) -> None:
    seqs = {f"v{i}": moving_squares(20, 32, 2, 5, 10 + i) for i in range(3)}
    root, res = make_tree(tmp_path, seqs)
    a = evaluate_davis(root, res, workers=1, write_csv=False, progress=False)
    b = evaluate_davis(root, res, workers=2, write_csv=False, progress=False)
    assert a.object_names == b.object_names
    assert np.array_equal(a.j_stats, b.j_stats) and np.array_equal(a.f_stats, b.f_stats)


def test_grayscale_predictions_and_2016_binarisation(tmp_path) -> None:
    gts, preds = moving_squares(20, 32, 2, 5, 3)
    root, res = make_tree(tmp_path, {"s": (gts, preds)})
    a = evaluate_davis(root, res, write_csv=False, progress=False)
    for t, p in enumerate(preds):
        Image.fromarray(p, mode="L").save(res / "s" / f"{t:05d}.png")
    b = evaluate_davis(root, res, write_csv=False, progress=False)
    assert np.array_equal(a.j_stats, b.j_stats)
    (root / "ImageSets" / "2016").mkdir()
    (root / "ImageSets" / "2016" / "val.txt").write_text("s\n")
    c = evaluate_davis(root, res, year="2016", write_csv=False, progress=False)
    j = [plain_j(preds[t] > 0, gts[t] > 0) for t in range(1, 4)]
    assert c.object_names == ["s_1"] and np.array_equal(c.sequences[0].j[0], j)


def test_csv_formatting_rules() -> None:
    half = "%.3f" % 0.0005  # noqa: UP031 - the C rounding of the binary value, as pandas uses
    text = format_csv(["a", "b", "c"], [["x,y", -1e-9, float("nan")], ["z", 0.0005, 0.12345]])
    assert text == f'a,b,c{NL}"x,y",-0.000,{NL}z,{half},0.123{NL}'


def test_csv_matches_pandas() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.random(30) * 2 - 1, [-1e-12, 0.0, -0.0, 0.0005, 0.9995, 1.0, np.nan]])
    rows = [[f"seq-{i}_1", float(a), float(b)] for i, (a, b) in enumerate(zip(values, values[::-1], strict=True))]
    frame = pd.DataFrame(data=rows, columns=["Sequence", "J-Mean", "F-Mean"])
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.3f")
    assert format_csv(["Sequence", "J-Mean", "F-Mean"], rows) == buf.getvalue()


# ----------------------------------------------------------------------------- bad input


def _problems(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


def test_all_bad_inputs_reported_at_once_without_csv(tmp_path) -> None:
    seqs = {name: moving_squares(20, 32, 2, 5, i) for i, name in enumerate(["extra", "void", "missing", "size"])}
    root, res = make_tree(tmp_path, seqs)
    p = seqs["extra"][1][2].copy()
    p[0, 0] = 3
    write_label(res / "extra" / "00002.png", p)  # id 3 > N = 2
    p = seqs["void"][1][1].copy()
    p[0, 0] = 255
    write_label(res / "void" / "00001.png", p)  # 255 is an id too
    (res / "missing" / "00003.png").unlink()
    write_label(res / "size" / "00002.png", np.zeros((21, 32), np.uint8))
    with pytest.raises(DataError) as exc:
        evaluate_davis(root, res, progress=False)
    msg = _problems(exc)
    assert msg.count("\n  - ") == 4  # one error, four offenders
    assert "missing: 1 prediction(s) missing: 00003.png" in msg
    assert "size/00002.png: size 21x32 (HxW) differs from the ground truth 20x32" in msg
    assert "extra/00002.png: predicted id(s) [3]" in msg and "void/00001.png: predicted id(s) [255]" in msg
    assert "N = 2" in msg and not (res / "global_results-val.csv").exists()
    write_label(res / "size" / "00002.png", seqs["size"][1][2])
    write_label(res / "missing" / "00003.png", seqs["missing"][1][3])
    with pytest.raises(DataError) as exc:  # id problems alone are found while scoring
        evaluate_davis(root, res, workers=2, progress=False)
    assert _problems(exc).count("\n  - ") == 2 and not (res / "global_results-val.csv").exists()


def test_rgb_short_sequence_and_bad_options(tmp_path) -> None:
    seqs = {name: moving_squares(20, 32, 1, 4, i) for i, name in enumerate(["rgb", "i16", "corrupt", "gone"])}
    seqs["short"] = moving_squares(20, 32, 1, 2, 1)
    root, res = make_tree(tmp_path, seqs)
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(res / "rgb" / "00001.png")
    Image.fromarray(np.zeros((20, 32), np.uint16)).save(res / "i16" / "00002.png")
    (res / "corrupt" / "00001.png").write_bytes(b"not a png")
    shutil.rmtree(res / "gone")
    with pytest.raises(DataError) as exc:
        evaluate_davis(root, res, progress=False)
    msg = str(exc.value)
    assert "rgb/00001.png: must be a palette or 8-bit grayscale PNG, got mode 'RGB'" in msg
    assert "i16/00002.png: must be a palette or 8-bit grayscale PNG, got mode 'I;16'" in msg
    assert "corrupt/00001.png: cannot read image" in msg and "gone: prediction folder not found" in msg
    assert "at least 3 are needed" in msg and msg.count("\n  - ") == 5
    with pytest.raises(ConfigError):
        evaluate_davis(root, res, set_name="valid", progress=False)
    with pytest.raises(DataError, match="sequence list not found"):
        evaluate_davis(root, res, set_name="train", progress=False)
    assert cli_main(["eval", "--davis-root", str(root), "--results", str(res), "--quiet"]) == 2


def test_decay_past_255_frames_and_compat_switch(tmp_path, caplog) -> None:
    t_len = 260  # n = 258 evaluated frames: the official uint8 bins leave the last Decay bin empty
    gts = [np.zeros((6, 8), np.uint8) for _ in range(t_len)]
    for g in gts:
        g[1:4, 2:6] = 1
    preds = [g if t < 130 else np.zeros_like(g) for t, g in enumerate(gts)]
    root, res = make_tree(tmp_path, {"long": (gts, preds)})
    result = evaluate_davis(root, res, progress=False)
    assert result.j_stats[0, 2] == 1.0  # first quarter all 1, last quarter all 0
    assert any("258 evaluated frames" in w and "nan" in w for w in result.warnings)
    compat = evaluate_davis(root, res, uint8_decay=True, output_dir=tmp_path / "compat", progress=False)
    assert np.isnan(compat.j_stats[0, 2])
    assert (tmp_path / "compat" / "global_results-val.csv").read_text().splitlines()[1].split(",")[3] == ""


def test_cli_writes_and_reuses(tmp_path, capsys) -> None:
    root, res = make_tree(tmp_path, {"s": moving_squares(20, 32, 2, 5, 4)})
    assert cli_main(["eval", "--davis-root", str(root), "--results", str(res), "--workers", "1", "--quiet"]) == 0
    fresh = (res / "global_results-val.csv").read_text()
    stale = fresh.replace(fresh.splitlines()[1], "0.111,0.111,0.111,0.111,0.111,0.111,0.111")
    (res / "global_results-val.csv").write_text(stale)
    capsys.readouterr()
    assert cli_main(["eval", "--davis-root", str(root), "--results", str(res), "--reuse", "--quiet"]) == 0
    assert "0.111" in capsys.readouterr().out and (res / "global_results-val.csv").read_text() == stale
    assert cli_main(["eval", "--davis-root", str(root), "--results", str(res), "--quiet"]) == 0  # recomputed
    assert (res / "global_results-val.csv").read_text() == fresh


# ----------------------------------------------------------------------------- official toolkit parity


@pytest.mark.skipif(
    not (OFFICIAL / "evaluation_method.py").is_file(),
    reason="official toolkit not exported to .ref/davis2017-evaluation",
)
def test_byte_identical_to_official_toolkit(tmp_path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("skimage")
    gts, preds = moving_squares(30, 50, 4, 7, 7)
    for g in gts:
        g[g == 3] = 0  # phantom id
    preds = [np.where(p == 3, 0, p) for p in preds]
    edge_g, edge_p = moving_squares(17, 61, 2, 4, 8)
    for g, p in zip(edge_g, edge_p, strict=True):
        g[:, :2], p[:, :3], g[-1, :] = 1, 1, 2  # border-touching masks
    full_g = [np.ones((12, 12), np.uint8) for _ in range(3)]
    full_p = [np.ones((12, 12), np.uint8), np.zeros((12, 12), np.uint8), np.ones((12, 12), np.uint8)]
    root, res = make_tree(tmp_path, {"a": (gts, preds), "edge": (edge_g, edge_p), "full": (full_g, full_p)})
    official = tmp_path / "res_official"
    shutil.copytree(res, official)
    run = subprocess.run(
        [
            sys.executable,
            "evaluation_method.py",
            "--task",
            "semi-supervised",
            "--set",
            "val",
            "--davis_path",
            str(root),
            "--results_path",
            str(official),
        ],
        cwd=OFFICIAL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    evaluate_davis(root, res, workers=2, progress=False)
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (res / name).read_bytes() == (official / name).read_bytes(), name

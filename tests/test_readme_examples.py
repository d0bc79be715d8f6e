"""The documentation's examples work as written: README.md and every page of docs/.

- Every ```python block runs as it stands, in a fresh temporary working folder. What a block needs but does not
  make is declared in an HTML comment on the line before it, ``<!-- example: needs stcn.pth, frames, mask -->``,
  and prepared here on synthetic data (see :data:`NEEDS`); ``<!-- example: self-contained -->`` or no comment
  means it needs nothing. An unknown need fails the test.
- Every ``corrvos <command>`` line of a ```bash block (line continuations joined) names an existing command and
  only options its ``--help`` lists; ``python benchmarks/<script>.py`` lines only options of that script; a
  ``corrvos train --config configs/...`` line resolves with ``--print-config``.
- A ```yaml block that starts with ``# <name>.yaml`` loads as a training configuration.
- Every relative link points at an existing file, and every ``#anchor`` at a heading of that file.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import paper_run_config
from test_models import _torchvision_state  # a torchvision-format ResNet state_dict

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

DAVIS_ROOT = "data/DAVIS/2017/trainval"
YOUTUBE_ROOT = "data/YouTube"
RUN_DIR = "runs/demo"


# ------------------------------------------------------------------------------------------------ parsing
@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    needs: tuple[str, ...] | None  # None: no declaration

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


_DECLARATION = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->$")


def _parse_declaration(text: str, where: str) -> tuple[str, ...]:
    if text == "self-contained":
        return ()
    if not text.startswith("needs "):
        raise ValueError(f"{where}: example declaration must be 'needs A, B' or 'self-contained', got {text!r}")
    return tuple(n.strip() for n in text[len("needs ") :].split(",") if n.strip())


def blocks(lang: str) -> list[Block]:
    """Every fenced block of ``lang`` in the pages, with the declaration on the line before it."""
    found = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = lines[i].strip()
            if not fence.startswith("```"):
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            if fence == f"```{lang}":
                before = lines[i - 1].strip() if i > 0 else ""
                match = _DECLARATION.match(before)
                needs = _parse_declaration(match.group(1), f"{page.name}:{i + 1}") if match else None
                found.append(Block(page, i + 1, lang, "\n".join(lines[i + 1 : end]) + "\n", needs))
            i = end + 1
    return found


def test_every_python_block_is_collected() -> None:
    """The fence parser sees every python block (a mis-typed fence would silently drop one)."""
    text = "".join(p.read_text(encoding="utf-8") for p in PAGES)
    assert len(blocks("python")) == text.count("```python\n")
    assert len(blocks("python")) >= 10


# ------------------------------------------------------------------------------------------------ resources
class Resources:
    """What the examples may need, each built once per test session on first use (in a shared folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[str, Path] = {}

    def _once(self, key: str, make: Callable[[Path], None]) -> Path:
        if key not in self._made:
            path = self.root / key
            make(path)
            self._made[key] = path
        return self._made[key]

    def stcn(self) -> Path:
        def make(path: Path) -> None:
            from corrvos.models import build_model

            torch.manual_seed(0)
            model = build_model("stcn").eval()
            with torch.no_grad():
                model.key_proj.key_proj.weight.mul_(0.05)  # finite, memory-dependent probabilities
            torch.save(model.state_dict(), path)

        return self._once("stcn.pth", make)

    def xmem(self) -> Path:
        def make(path: Path) -> None:
            from corrvos.models import build_model

            torch.manual_seed(1)
            torch.save(build_model("xmem").eval().state_dict(), path)

        return self._once("XMem.pth", make)

    def imagenet(self) -> Path:
        def make(path: Path) -> None:
            path.mkdir()
            g = torch.Generator().manual_seed(8)
            torch.save(_torchvision_state(50, g), path / "resnet50-0676ba61.pth")
            torch.save(_torchvision_state(18, g), path / "resnet18-f37072fd.pth")

        return self._once("imagenet", make)

    def davis(self) -> Path:
        from corrvos.data.synthetic import generate_dataset

        return self._once(
            "davis", lambda p: generate_dataset(p, sequences=4, frames=8, size=(96, 160), seed=0, layout="davis")
        )

    def youtube(self) -> Path:
        from corrvos.data.synthetic import generate_dataset

        return self._once(
            "youtube", lambda p: generate_dataset(p, sequences=4, frames=16, size=(96, 160), seed=1, layout="youtube")
        )

    def predictions(self) -> Path:
        from corrvos.inference.baseline import copy_first_frame

        davis = self.davis()
        return self._once("predictions", lambda p: copy_first_frame(davis, p, split="val", progress=False))

    def run(self) -> Path:
        """Two steps of `corrvos train` in paper mode (so L_OCL's head is trained and kept) on the DAVIS set."""
        from corrvos.config import config_from_dict
        from corrvos.training.trainer import Trainer

        davis = self.davis()

        def make(path: Path) -> None:
            cfg = paper_run_config(davis, keep_checkpoints=0)
            assert Trainer(config_from_dict(cfg), out_dir=path, progress=False).run().finished

        return self._once("run", make)


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory):
    res = Resources(tmp_path_factory.mktemp("doc_resources"))
    yield res
    for path in res.root.rglob("*.pth"):  # ~1 GB of random weights: do not keep them in pytest's temp folders
        path.unlink(missing_ok=True)


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest)


def _frames_and_mask(scope: dict) -> None:
    scope["frames"] = [torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(t)) for t in range(4)]
    mask = np.zeros((40, 56), np.int64)
    mask[5:20, 5:30], mask[22:38, 30:50] = 3, 7
    scope["mask"] = torch.from_numpy(mask)


def _cache(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = work / ".corrvos-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("CORRVOS_CACHE", str(cache))
    return cache


def _prepare_xmem_cache(res: Resources, work: Path, scope: dict, mp: pytest.MonkeyPatch) -> None:
    _link(res.xmem(), _cache(work, mp) / "XMem.pth")


def _prepare_imagenet(res: Resources, work: Path, scope: dict, mp: pytest.MonkeyPatch) -> None:
    mp.setenv("HOME", str(work))
    mp.setenv("TORCH_HOME", str(work / ".torch"))  # nothing is downloaded: the cache holds the files
    cache = _cache(work, mp)
    for file in res.imagenet().iterdir():
        _link(file, work / "imagenet_weights" / file.name)
        _link(file, cache / file.name)


#: need -> preparation of the working folder / scope (resources, working folder, scope, monkeypatch).
NEEDS: dict[str, Callable[[Resources, Path, dict, pytest.MonkeyPatch], None]] = {
    "stcn.pth": lambda res, work, scope, mp: _link(res.stcn(), work / "stcn.pth"),
    "xmem-in-cache": _prepare_xmem_cache,
    "imagenet-weights": _prepare_imagenet,
    "davis": lambda res, work, scope, mp: _copy(res.davis(), work / DAVIS_ROOT),
    "youtube": lambda res, work, scope, mp: _copy(res.youtube(), work / YOUTUBE_ROOT),
    "predictions": lambda res, work, scope, mp: _copy(res.predictions(), work / "output" / "davis17-val"),
    "run": lambda res, work, scope, mp: _link(res.run(), work / RUN_DIR),
    "frames": lambda res, work, scope, mp: _frames_and_mask(scope),
    "mask": lambda res, work, scope, mp: _frames_and_mask(scope),
}


# ------------------------------------------------------------------------------------------------ checks
def _check_model_api(scope: dict) -> None:
    seg, model = scope["seg"], scope["model"]
    assert seg.prob.shape == (1, 3, 64, 64) and seg.hidden.shape == (1, 2, model.hidden_dim, 4, 4)
    torch.testing.assert_close(seg.prob.sum(1), torch.ones(1, 64, 64))


def _check_inference(scope: dict) -> None:
    labels = scope["labels"]
    assert labels.shape == (40, 56) and set(labels.unique().tolist()) <= {0, 3, 7}
    assert scope["core"].object_ids == [3, 7]


def _check_loading(scope: dict) -> None:
    from corrvos.models import arch_of

    assert arch_of(scope["model"]) == "xmem"


def _check_losses(scope: dict) -> None:
    out = scope["out"]
    assert set(out.terms) == {"seg", "pcl", "ocl"} and torch.isfinite(out.total)
    assert out.weights["pcl"] > 0 and out.weights["ocl"] > 0
    assert all(p.grad is not None for p in scope["head"].parameters())  # L_OCL trains PROJ
    assert scope["model"].key_proj.key_proj.weight.grad is not None  # ... and the losses reach the keys


def _check_propagate(scope: dict, work: Path) -> None:
    stats = scope["stats"]
    assert stats.written == 8 and sorted(p.name for p in (work / "out").iterdir())[0] == "00000.png"


def _check_figures(scope: dict, work: Path) -> None:
    assert (work / "curves.png").is_file()
    assert scope["source"].head is not None  # <stage>_final.pth keeps L_OCL's projection head


def _check_overlay(scope: dict, work: Path) -> None:
    assert (work / "overlay.mp4").stat().st_size > 0 and scope["video"].frames == 5


#: a line of the block -> what must hold afterwards (scope, or scope and working folder)
CHECKS: dict[str, Callable[..., None]] = {
    "seg = model.segment(readout, feats, hidden)": _check_model_api,
    "core = InferenceCore(model)": _check_inference,
    'model = M.load_model("xmem")': _check_loading,
    "out.total.backward()": _check_losses,
    "stats = propagate(": _check_propagate,
    "source = find_projection_head(": _check_figures,
    'with VideoWriter("overlay.mp4", fps=10) as video:': _check_overlay,
}


@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.name)
def test_python_example_runs_as_written(block: Block, resources: Resources, tmp_path: Path, monkeypatch) -> None:
    needs = block.needs or ()
    unknown = [n for n in needs if n not in NEEDS]
    assert not unknown, f"{block.name}: unknown needs {unknown} (known: {', '.join(NEEDS)})"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("CORRVOS_CACHE", str(work / ".corrvos-cache-empty"))  # never the user's cache
    scope: dict = {"__name__": "__doc_example__"}
    for need in needs:
        NEEDS[need](resources, work, scope, monkeypatch)
    monkeypatch.chdir(work)
    exec(compile(block.code, block.name, "exec"), scope)
    for line, check in CHECKS.items():
        if line in block.code:
            if check.__code__.co_argcount == 2:
                check(scope, work)
            else:
                check(scope)


def test_checked_examples_exist() -> None:
    """Each extra check above still finds its example (an edited example must keep its check)."""
    code = "".join(b.code for b in blocks("python"))
    assert [line for line in CHECKS if line not in code] == []


# ------------------------------------------------------------------------------------------------ bash
_OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", ">&", "(", ")", "$"}
_GLOBAL = {"--debug", "-v", "--verbose", "--version", "-h", "--help"}


@dataclass(frozen=True)
class Command:
    where: str
    words: list[str]  # the words after `corrvos`


def _bash_lines(block: Block) -> list[tuple[str, str]]:
    """(where, logical line) of a bash block: continuation lines joined."""
    out, buffer, start = [], "", block.line + 1
    for offset, raw in enumerate(block.code.splitlines()):
        if not buffer:
            start = block.line + 1 + offset
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        out.append((f"{block.page.relative_to(REPO)}:{start}", buffer + raw))
        buffer = ""
    if buffer:
        out.append((f"{block.page.relative_to(REPO)}:{start}", buffer))
    return out


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _invocations(tokens: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(corrvos argument lists, python benchmarks/*.py argument lists) of one shell line."""
    corrvos, scripts = [], []
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i > 0 else None
        at_command = (
            prev is None
            or prev in _OPERATORS
            or prev in {"-m", "which", "time"}
            or bool(prev and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", prev))
        )
        if tok.rsplit("/", 1)[-1] == "corrvos" and at_command:
            rest = tokens[i + 1 :]
            if prev == "which" and rest[:1] == [")"]:
                rest = rest[1:]
            end = next((k for k, t in enumerate(rest) if t in _OPERATORS), len(rest))
            corrvos.append(rest[:end])
        if tok.startswith("benchmarks/") and tok.endswith(".py") and prev is not None and "python" in prev:
            rest = tokens[i + 1 :]
            end = next((k for k, t in enumerate(rest) if t in _OPERATORS), len(rest))
            scripts.append([tok, *rest[:end]])
    return corrvos, scripts


def _commands() -> tuple[list[Command], list[Command]]:
    corrvos, scripts = [], []
    for block in blocks("bash"):
        for where, line in _bash_lines(block):
            found, bench = _invocations(_tokens(line))
            corrvos += [Command(where, words) for words in found]
            scripts += [Command(where, words) for words in bench]
    return corrvos, scripts


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _command_parser(cmd: Command) -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    """The parser of the (sub-)command, the words after it, and the command's name path."""
    from corrvos.cli import build_parser

    words = list(cmd.words)
    while words and words[0] in _GLOBAL:
        words.pop(0)
    assert words, f"{cmd.where}: `corrvos` without a command"
    commands = _subparsers(build_parser())
    assert words[0] in commands, f"{cmd.where}: unknown command {words[0]!r} (known: {', '.join(commands)})"
    parser, names, words = commands[words[0]], [words[0]], words[1:]
    views = _subparsers(parser)
    if views:
        assert words and words[0] in views, f"{cmd.where}: corrvos {names[0]} needs one of {', '.join(views)}"
        parser, names, words = views[words[0]], [*names, words[0]], words[1:]
    return parser, words, names


def test_bash_examples_use_existing_commands_and_options() -> None:
    corrvos, _ = _commands()
    assert len(corrvos) >= 30
    wrong = []
    for cmd in corrvos:
        parser, words, names = _command_parser(cmd)
        known = _options(parser)
        for word in words:
            option = word.split("=", 1)[0]
            if option.startswith("--") and option not in known:
                wrong.append(f"{cmd.where}: corrvos {' '.join(names)} has no option {option}")
    assert wrong == []
    used = {_command_parser(c)[2][0] for c in corrvos}
    from corrvos.cli import COMMANDS

    missing = sorted(set(COMMANDS) - used - {"merge", "pack-davis"})  # TODO: merge / pack-davis examples
    assert missing == [], f"commands without a bash example in the docs: {missing}"


def test_bash_examples_of_benchmark_scripts_use_their_options() -> None:
    _, scripts = _commands()
    assert len(scripts) >= 5
    wrong = []
    for cmd in scripts:
        script = REPO / cmd.words[0]
        assert script.is_file(), f"{cmd.where}: {cmd.words[0]} does not exist"
        source = script.read_text(encoding="utf-8")
        for word in cmd.words[1:]:
            option = word.split("=", 1)[0]
            if option.startswith("--") and f'"{option}"' not in source:
                wrong.append(f"{cmd.where}: {cmd.words[0]} has no option {option}")
    assert wrong == []


def test_train_examples_with_shipped_configs_resolve(capsys, monkeypatch) -> None:
    from corrvos.cli import main

    monkeypatch.chdir(REPO)
    checked = 0
    for cmd in _commands()[0]:
        _, words, names = _command_parser(cmd)
        if names != ["train"] or "--config" not in words or "--resume" in words:
            continue
        config = words[words.index("--config") + 1]
        if not (REPO / config).is_file():
            continue  # a file the example writes itself (finetune.yaml: checked with the YAML blocks)
        assert main(["train", *words, "--print-config"]) == 0, f"{cmd.where}: {capsys.readouterr().err}"
        checked += 1
    assert checked >= 5


def test_yaml_examples_load_as_training_configs(tmp_path: Path) -> None:
    from corrvos.config import load_config

    found = [b for b in blocks("yaml") if re.match(r"#\s*\S+\.yaml\s*$", b.code.splitlines()[0])]
    assert found
    os.symlink(REPO / "configs", tmp_path / "configs")
    for block in found:
        path = tmp_path / block.code.splitlines()[0].lstrip("#").strip()
        path.write_text(block.code)
        load_config(path)


# ------------------------------------------------------------------------------------------------ links
def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (``-`` and ``_`` kept), spaces -> ``-``."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _prose_lines(page: Path) -> list[str]:
    """The lines of a page outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(page: Path) -> set[str]:
    anchors, counts = set(), {}
    for line in _prose_lines(page):
        if not line.startswith("#"):
            continue
        slug = _slug(line.lstrip("#"))
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_links_point_at_existing_files_and_headings() -> None:
    broken = []
    for page in PAGES:
        text = "\n".join(_prose_lines(page))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
            if path_part.startswith("/"):
                broken.append(f"{page.name}: {target} (absolute link)")
    assert broken == []

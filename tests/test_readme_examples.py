"""The README's Python examples of the model API and of streaming inference run as written.

Each example is found by a line it contains and executed as it stands; the inference example is given what it
names but does not make (a ``stcn.pth`` file in the working folder, ``frames`` and ``mask``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"expected one README python block containing {containing!r}, found {len(found)}"
    return found[0]


def test_model_api_example_runs() -> None:
    scope: dict = {}
    exec(compile(_python_block("seg = model.segment(readout, feats, hidden)"), "README:model-api", "exec"), scope)
    seg, model = scope["seg"], scope["model"]
    assert seg.prob.shape == (1, 3, 64, 64) and seg.hidden.shape == (1, 2, model.hidden_dim, 4, 4)
    torch.testing.assert_close(seg.prob.sum(1), torch.ones(1, 64, 64))


def test_inference_example_runs(tmp_path: Path, monkeypatch) -> None:
    from corrvos.models import build_model

    torch.manual_seed(0)
    model = build_model("stcn").eval()
    with torch.no_grad():
        model.key_proj.key_proj.weight.mul_(0.05)
    torch.save(model.state_dict(), tmp_path / "stcn.pth")
    monkeypatch.chdir(tmp_path)
    frames = [torch.rand(3, 40, 56) for _ in range(4)]
    mask = np.zeros((40, 56), np.int64)
    mask[5:20, 5:30], mask[22:38, 30:50] = 3, 7
    scope = {"frames": frames, "mask": torch.from_numpy(mask)}
    exec(compile(_python_block("core = InferenceCore(model)"), "README:inference", "exec"), scope)
    labels = scope["labels"]
    assert labels.shape == (40, 56) and set(labels.unique().tolist()) <= {0, 3, 7}
    assert scope["core"].object_ids == [3, 7]

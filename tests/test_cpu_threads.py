"""The intra-op thread choice (:mod:`corrvos.cpu_threads`): precedence, the automatic rule, the CLI wiring."""

from __future__ import annotations

import logging

import pytest
import torch

from corrvos import cpu_threads
from corrvos.cpu_threads import ThreadChoice, choose_threads
from corrvos.errors import ConfigError


def auto(**kw) -> int:
    args = {"cpu_count": 8, "affinity": None, "load": 0.0, "env": {}, "explicit": None, "workers": 0} | kw
    return choose_threads(**args).threads


def test_idle_machine_uses_every_usable_core():
    assert auto(cpu_count=2) == 2
    assert auto(cpu_count=8) == 8


def test_affinity_wins_over_the_cpu_count():
    # 8 cores on the machine, but this process may run on 3 of them only (taskset, a container's cpuset)
    assert auto(cpu_count=8, affinity={0, 2, 5}) == 3


def test_busy_cores_are_left_to_their_processes():
    # issue #21: one busy process on 2 cores -> one thread (the default of 2 was 5-8x slower)
    assert auto(cpu_count=2, load=1.0) == 1
    assert auto(cpu_count=8, load=3.0) == 5
    assert auto(cpu_count=8, load=2.4) == 6  # 5.6 rounds to 6
    assert auto(cpu_count=8, load=2.5) == 6  # 5.5: half rounds up
    assert auto(cpu_count=8, load=2.6) == 5


def test_at_least_one_thread_and_never_more_than_the_usable_cores():
    assert auto(cpu_count=2, load=7.5) == 1
    assert auto(cpu_count=4, load=-1.0) == 4  # a nonsense load counts as none
    assert auto(cpu_count=4, load=float("nan")) == 4
    assert auto(cpu_count=4, load=None) == 4  # unknown load
    assert auto(cpu_count=None, load=None) == 1  # nothing known


def test_dataloader_workers_take_one_core_each():
    assert auto(cpu_count=8, workers=3) == 5
    assert auto(cpu_count=8, load=1.0, workers=3) == 4
    assert auto(cpu_count=2, workers=4) == 1


def test_environment_variable_overrides_the_automatic_choice():
    choice = choose_threads(cpu_count=2, affinity=None, load=1.0, env={"OMP_NUM_THREADS": "4"}, workers=2)
    assert (choice.threads, choice.source) == (4, "OMP_NUM_THREADS")
    assert auto(env={"OMP_NUM_THREADS": "3,1"}) == 3  # OpenMP's nested list: the first level
    assert auto(cpu_count=2, env={"OMP_NUM_THREADS": " "}) == 2  # blank: as if unset


def test_the_flag_overrides_the_environment():
    choice = choose_threads(cpu_count=2, affinity=None, load=0.0, env={"OMP_NUM_THREADS": "1"}, explicit=3)
    assert (choice.threads, choice.source) == (3, "--threads")


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_environment_value_is_one_clear_error(value: str):
    with pytest.raises(ConfigError, match=r"OMP_NUM_THREADS=.*not a positive whole number"):
        auto(env={"OMP_NUM_THREADS": value})


def test_a_bad_flag_is_one_clear_error():
    with pytest.raises(ConfigError, match="--threads must be >= 1, got 0"):
        auto(explicit=0)


def test_the_description_names_the_inputs_and_the_overrides():
    text = ThreadChoice(1, "auto", 2, load=1.0, workers=0).describe()
    assert text.startswith("intra-op threads: 1 (auto: 2 usable cores, load 1.0")
    assert "--threads N or OMP_NUM_THREADS=N overrides" in text
    assert ThreadChoice(3, "--threads", 2).describe() == "intra-op threads: 3 (from --threads; 2 usable cores)"


def test_configure_applies_and_logs_once(monkeypatch, caplog):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(cpu_threads.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(cpu_threads, "_last_logged", None)
    try:
        with caplog.at_level(logging.INFO, logger="corrvos.cpu_threads"):
            assert cpu_threads.configure_threads(2).threads == 2
            assert torch.get_num_threads() == 2
            cpu_threads.configure_threads(2)  # the same choice again: not logged again
            assert cpu_threads.configure_threads(None).source == "OMP_NUM_THREADS"
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert [r.getMessage() for r in caplog.records] == [
        "intra-op threads: 2 (from --threads; 3 usable cores)",
        "intra-op threads: 1 (from OMP_NUM_THREADS; 3 usable cores)",
    ]


def test_other_load_reads_the_running_count(monkeypatch, tmp_path):
    # "/proc/loadavg" is "1-min 5-min 15-min running/total last-pid"; the reader itself is one of the running
    import builtins

    real_open = builtins.open
    values = iter(["0.10 0.2 0.3 3/200 1\n", "0.10 0.2 0.3 2/200 1\n", "0.10 0.2 0.3 3/200 1\n"])

    def fake_open(path, *args, **kwargs):
        if path == "/proc/loadavg":
            target = tmp_path / "loadavg"
            target.write_text(next(values))
            return real_open(target, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert cpu_threads.other_load(samples=3, interval=0.0) == 2.0  # median of 2, 1, 2


@pytest.mark.parametrize("command", [["train"], ["infer"], ["segment"], ["demo"], ["visualize", "matches"]])
def test_the_model_commands_take_threads(command: list[str]):
    from corrvos.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command[0]]
    if len(command) > 1:
        sub = sub._subparsers._group_actions[0].choices[command[1]]
    assert any("--threads" in a.option_strings for a in sub._actions)

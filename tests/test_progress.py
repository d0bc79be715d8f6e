"""Progress in logs (:mod:`corrvos.progress`): a tqdm bar on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io

from corrvos.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    stream = _Terminal()
    with progress_bar(total=3, desc="x", file=stream) as bar:
        assert isinstance(bar, tqdm)
        bar.update(3)
    assert "\r" in stream.getvalue()


def test_a_log_gets_one_plain_line_per_tenth_and_one_at_the_end():
    stream = io.StringIO()
    items = list(progress_bar(range(50), desc="infer", unit="seq", file=stream))
    assert items == list(range(50))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # 5, 10, ..., 45 of 50 (nine tenths) while running, then 50/50 at the end
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == [f"{n}/50" for n in range(5, 51, 5)]
    assert lines[-1].startswith("infer: 50/50 seq (100%), ")


def test_a_long_run_still_prints_a_few_lines():
    stream = io.StringIO()
    with progress_bar(total=10_000, desc="train[main]", file=stream) as bar:
        for _ in range(10_000):
            bar.update(1)
    assert len(stream.getvalue().splitlines()) == 10


def test_postfix_values_and_a_resumed_start():
    stream = io.StringIO()
    bar = progress_bar(total=20, initial=10, desc="train[main]", unit="step", file=stream)
    assert isinstance(bar, LineProgress)
    bar.update(1)  # 11/20: still in the tenth of step 10, no line
    assert stream.getvalue() == ""
    bar.set_postfix(loss="0.1234", iou="0.500")
    bar.update(1)  # 12/20 enters the next tenth
    bar.close()
    bar.close()  # closing twice prints once
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("train[main]: 12/20 step (60%), ") and lines[0].endswith(", loss=0.1234, iou=0.500")


def test_transient_and_disabled_displays_print_nothing_in_a_log():
    stream = io.StringIO()
    assert list(progress_bar(range(4), leave=False, file=stream)) == [0, 1, 2, 3]
    with progress_bar(total=4, disable=True, file=stream) as bar:
        bar.update(4)
    assert stream.getvalue() == ""


def test_unknown_total_prints_only_the_end_and_bytes_are_scaled():
    stream = io.StringIO()
    with progress_bar(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc="stcn.pth", file=stream) as bar:
        for _ in range(3):
            bar.update(3 * 2**20)
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("stcn.pth: 9.0 MB, ")


def test_default_stream_is_stderr_when_it_is_not_a_terminal(capsys):
    for _ in progress_bar(range(2), desc="synth (davis)", unit="video"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1].startswith("synth (davis): 2/2 video (100%)")

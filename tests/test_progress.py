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


def test_a_log_gets_one_plain_line_per_quarter_and_one_at_the_end():
    stream = io.StringIO()
    items = list(progress_bar(range(50), desc="infer", unit="seq", file=stream))
    assert items == list(range(50))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the first item past each quarter of 50 (12.5, 25, 37.5), then 50/50 at the end
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["13/50", "25/50", "38/50", "50/50"]
    assert lines[-1].startswith("infer: 50/50 seq (100%), ")


def test_a_long_run_still_prints_a_few_lines():
    stream = io.StringIO()
    with progress_bar(total=10_000, desc="train[main]", file=stream) as bar:
        for _ in range(10_000):
            bar.update(1)
    assert len(stream.getvalue().splitlines()) == 4


def test_postfix_values_and_a_resumed_start():
    stream = io.StringIO()
    bar = progress_bar(total=20, initial=10, desc="train[main]", unit="step", file=stream)
    assert isinstance(bar, LineProgress)
    bar.update(4)  # 14/20: still in the quarter that step 10 started, no line
    assert stream.getvalue() == ""
    bar.set_postfix(loss="0.1234", iou="0.500")
    bar.update(1)  # 15/20 enters the last quarter
    bar.close()
    bar.close()  # closing twice prints once
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("train[main]: 15/20 step (75%), ") and lines[0].endswith(", loss=0.1234, iou=0.500")


def test_transient_and_disabled_displays_print_nothing_in_a_log():
    stream = io.StringIO()
    assert list(progress_bar(range(4), leave=False, file=stream)) == [0, 1, 2, 3]
    with progress_bar(total=4, disable=True, file=stream) as bar:
        bar.update(4)
    assert stream.getvalue() == ""


def test_displays_inside_an_open_one_print_nothing_in_a_log():
    stream = io.StringIO()
    for _ in progress_bar(range(3), desc="infer", unit="seq", file=stream):
        for _ in progress_bar(range(40), desc="frames", unit="frame", file=stream):
            pass
    assert [line.split(":")[0] for line in stream.getvalue().splitlines()] == ["infer"] * 3  # 1/3, 2/3, 3/3
    for _ in progress_bar(range(2), desc="after", file=stream):  # the outer one closed: the next one prints
        pass
    assert stream.getvalue().splitlines()[-1].startswith("after: 2/2")


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


def test_a_display_dropped_without_close_does_not_silence_later_ones():
    import gc

    stream = io.StringIO()
    progress_bar(total=5, desc="dropped", file=stream)  # never closed, never printed
    gc.collect()
    for _ in progress_bar(range(1), desc="next", file=stream):
        pass
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("next: 1/1 it (100%)")

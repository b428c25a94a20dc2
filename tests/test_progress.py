"""Progress in a log is a few plain lines; on a terminal it stays a tqdm bar."""

from __future__ import annotations

import io

from landmark.progress import PlainProgress, is_terminal, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_not_a_terminal_gives_a_few_plain_lines():
    stream, clock = io.StringIO(), Clock()
    items = []
    for item in PlainProgress(range(10_000), desc="rendering faces", unit="img", file=stream, clock=clock):
        items.append(item)
        clock.t += 0.01  # 100 s in all: every quarter mark is far enough from the line before
    assert items == list(range(10_000))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 6, lines  # start, three quarter marks, done
    assert lines[0] == "rendering faces: started (10,000 img)"
    assert lines[-1].startswith("rendering faces: done, 10,000 img in ")
    assert any("5,000/10,000 img (50%)" in line for line in lines)


def test_a_short_loop_writes_its_first_and_last_line_only():
    stream = io.StringIO()
    assert list(progress_bar(range(1000), desc="detecting faces", file=stream)) == list(range(1000))
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["detecting faces: started (1", "detecting faces: done"]


def test_update_set_postfix_and_context_manager():
    stream = io.StringIO()
    with progress_bar(total=8, desc="epoch 1/3", file=stream, min_gap_s=0) as bar:
        for _ in range(8):
            bar.set_postfix(loss="0.0123", lr="1.00e-03")
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[1].startswith("epoch 1/3: 2/8 it (25%)") and lines[1].endswith("loss=0.0123 lr=1.00e-03")
    assert lines[-1].startswith("epoch 1/3: done, 8 it in ")


def test_unknown_total_writes_on_the_interval_only():
    stream, clock = io.StringIO(), Clock()
    bar = PlainProgress(iter(range(100)), desc="frames", file=stream, interval_s=10.0, clock=clock)
    for _ in bar:
        clock.t += 1.0  # 100 items in 100 s: a line every 10 s
    lines = stream.getvalue().splitlines()
    assert lines[0] == "frames: started"
    assert 8 <= len(lines) <= 12
    assert lines[-1] == "frames: done, 100 it in 100.0 s (1.0 it/s)"


def test_disabled_writes_nothing():
    stream = io.StringIO()
    assert list(progress_bar([1, 2, 3], desc="x", disable=True, file=stream)) == [1, 2, 3]
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    stream = FakeTerminal()
    assert is_terminal(stream) and not is_terminal(io.StringIO())
    bar = progress_bar(range(3), desc="x", file=stream)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]

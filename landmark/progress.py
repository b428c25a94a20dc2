"""Progress for long loops: a tqdm bar on a terminal, a few plain lines in a log.

A tqdm bar redraws itself with carriage returns, several times a second; written to a file (CI, ``make run
2> log``) that is thousands of updates on one "line". When the stream is not a terminal, ``progress_bar``
returns a ``PlainProgress`` instead: one line when the loop starts, one at each quarter of a known total
(when at least ``min_gap_s`` seconds have passed since the previous line, so a loop of a few seconds writes
only its first and last line) or every ``interval_s`` seconds, and one at the end with the count, the elapsed
time and the rate. Both objects take the same calls (iterate, ``update``, ``set_postfix``, ``close``, ``with``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

MILESTONES = (0.25, 0.5, 0.75)  # fractions of a known total that get a line
INTERVAL_S = 60.0  # at most this long between two lines while the loop runs
MIN_GAP_S = 5.0  # a quarter mark gets a line only this long after the previous line: short loops write two


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, StringIO and closed streams)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = False,
    file: TextIO | None = None,
    interval_s: float = INTERVAL_S,
    min_gap_s: float = MIN_GAP_S,
    **tqdm_kwargs: Any,
) -> Any:
    """A progress display over ``iterable`` (or driven by ``update`` when it is None) on ``file`` (default
    standard error): a tqdm bar when the stream is a terminal, else a ``PlainProgress``. ``tqdm_kwargs``
    (``dynamic_ncols``, ...) go to tqdm only."""
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        from tqdm import tqdm

        return tqdm(
            iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, file=stream, **tqdm_kwargs
        )
    return PlainProgress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        file=stream,
        interval_s=interval_s,
        min_gap_s=min_gap_s,
    )


class PlainProgress:
    """Progress as a few whole lines (no carriage returns), for logs and pipes.

    Lines read ``DESC: 300/1,200 img (25%), 12.1 s, 24.8 img/s`` and end with ``DESC: done, 1,200 img in
    48.4 s (24.8 img/s)``; a ``set_postfix`` is appended to the next line (``loss=0.0123 lr=1.00e-03``).
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        file: TextIO | None = None,
        interval_s: float = INTERVAL_S,
        min_gap_s: float = MIN_GAP_S,
        clock: Any = time.monotonic,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.disable = disable
        self.file = file if file is not None else sys.stderr
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.clock = clock
        self.n = 0
        self.postfix = ""
        self.closed = False
        self.started = clock()
        self.last_line = self.started
        self.next_milestone = 0
        if not disable:
            size = f" ({total:,} {unit})" if total is not None else ""
            self._write(f"{self._prefix()}started{size}")

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("PlainProgress without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; writes a line at a quarter mark or when ``interval_s`` has passed."""
        self.n += n
        if self.disable or self.closed:
            return
        now = self.clock()
        crossed = False
        if self.total:
            while self.next_milestone < len(MILESTONES) and self.n >= MILESTONES[self.next_milestone] * self.total:
                self.next_milestone += 1
                crossed = True
            if self.n >= self.total:
                return  # close() writes the last line
        since = now - self.last_line
        if (crossed and since >= self.min_gap_s) or since >= self.interval_s:
            self._write(self._status(now))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown after the count on the next line, as tqdm's ``set_postfix``."""
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = " ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        """Write the closing line (once)."""
        if self.closed:
            return
        self.closed = True
        if self.disable:
            return
        elapsed = self.clock() - self.started
        rate = f" ({self.n / elapsed:,.1f} {self.unit}/s)" if elapsed > 0 else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        self._write(f"{self._prefix()}done, {self.n:,} {self.unit} in {elapsed:.1f} s{rate}{postfix}")

    def _prefix(self) -> str:
        return f"{self.desc}: " if self.desc else ""

    def _status(self, now: float) -> str:
        elapsed = now - self.started
        count = (
            f"{self.n:,}/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%)"
            if self.total
            else (f"{self.n:,} {self.unit}")
        )
        rate = f", {self.n / elapsed:,.1f} {self.unit}/s" if elapsed > 0 else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self._prefix()}{count}, {elapsed:.1f} s{rate}{postfix}"

    def _write(self, line: str) -> None:
        self.last_line = self.clock()
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except (ValueError, OSError):  # a closed or broken stream: progress is never worth an error
            pass

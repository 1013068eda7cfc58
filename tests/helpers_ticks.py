"""A monotonic clock (float seconds) that a test moves by hand, for code that takes one."""

from __future__ import annotations


class Ticks:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

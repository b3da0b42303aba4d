"""Training progress for whoever watches: the library reports, it never prints.

A training loop calls ``report(step, steps, loss)``; a caller that wants to show it (the
pipeline's console display) wraps the work in ``listening(fn)``. With no listener a report
costs a list lookup, so loops may report every step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[int, int, float], None]  # (step done, steps in all, loss)
_listeners: list[Listener] = []


def report(step: int, steps: int, loss: float) -> None:
    """Tell every listener that ``step`` of ``steps`` is done at ``loss``."""
    for listener in _listeners:
        listener(step, steps, loss)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` on every ``report`` made inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)

"""Work side by side inside one stage (the recipe search's trials).

Plain threads by default, as under ``python -m tasks`` and ``dvc repro``: a stage never
needs Prefect. A flow that runs the stage installs task runs instead (``using``), so the
Prefect UI shows each trial; the stage's code is the same either way.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

# (fn, label, keyword arguments) -> a future of fn's result
Submit = Callable[..., "concurrent.futures.Future[Any]"]
Executor = Callable[[int], AbstractContextManager[Submit]]


@contextmanager
def threads(workers: int) -> Iterator[Submit]:
    """``workers`` plain threads."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(fn: Callable[..., Any], label: str, **kwargs: Any) -> concurrent.futures.Future[Any]:
            return pool.submit(fn, **kwargs)

        yield submit


_EXECUTOR: contextvars.ContextVar[Executor] = contextvars.ContextVar("executor", default=threads)


def executor(workers: int) -> AbstractContextManager[Submit]:
    """The executor in effect (threads unless a flow installed another), ``workers`` wide."""
    return _EXECUTOR.get()(workers)


@contextmanager
def using(maker: Executor) -> Iterator[None]:
    """Within the block, ``executor`` builds its workers with ``maker``."""
    token = _EXECUTOR.set(maker)
    try:
        yield
    finally:
        _EXECUTOR.reset(token)

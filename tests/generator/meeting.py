"""A probe that shows whether two CTranslate2 generations really run at the same time.

`Meeting` stands in for a `FastGenerator`'s CTranslate2 model: the first decoding step of
each `generate_batch` call waits (up to `wait_s`) at a two-party barrier inside the engine's
own worker thread, and records whether another call reached its first step meanwhile. Two
calls meet only if the engine runs them side by side: with one replica the second call
queues behind the first, whose step then waits in vain. Wall-clock start/end times of the
Python calls would not tell the two apart (both calls are "in flight" either way).

The callback closes over plain data only, never over the model (see
`FastGenerator._line_counter` for why that matters).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Meeting"]


class Meeting:
    """Wraps a ctranslate2.Generator; `met` holds one bool per call, in order of first step."""

    def __init__(self, model: Any, wait_s: float) -> None:
        self.model = model
        self.barrier = threading.Barrier(2, timeout=wait_s)
        self.met: list[bool] = []

    def generate_batch(self, rows: list[list[str]], **kwargs: Any) -> Any:
        kwargs["callback"] = _meet_first(kwargs.get("callback"), self.barrier, self.met)
        return self.model.generate_batch(rows, **kwargs)


def _meet_first(inner: Callable[[Any], bool] | None, barrier: threading.Barrier,
                met: list[bool]) -> Callable[[Any], bool]:
    first = [True]

    def callback(step: Any) -> bool:
        if first[0]:
            first[0] = False
            try:
                barrier.wait()
                met.append(True)
            except threading.BrokenBarrierError:  # nobody came within wait_s
                met.append(False)
        return bool(inner(step)) if inner is not None else False

    return callback

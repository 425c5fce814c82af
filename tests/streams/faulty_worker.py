"""`python -m tests.streams.faulty_worker streams worker …`: the real `toolrec` CLI with a
fault injected into the worker's processing, for the crash-loop tests (test_hostile.py).

Feedback whose request id starts with "boom" raises inside the agent while it is applied,
and a window whose request id starts with "boomclose" raises when it closes — stand-ins for
any bug that a contract-valid event could trigger. With `FAULTY_FLUSH_MARKER=<path>` set,
the first batch whose outputs mention "failflush" fails to be delivered (as if the broker
refused it) and the marker file is created, so a restarted worker delivers it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streams.app as worker_app
from streams.sender import BatchSender
from toolrec.cli import main

_on_feedback, _close = worker_app.on_feedback, worker_app.close_json


def exploding_feedback(user: Any, feedback: Any, *args: Any, **kwargs: Any) -> Any:
    if feedback.request_id.startswith("boom") and not feedback.request_id.startswith("boomclose"):
        raise RuntimeError(f"injected fault on {feedback.request_id}")
    return _on_feedback(user, feedback, *args, **kwargs)


def exploding_close(user: Any, glob: Any, impression: Any, cfg: Any) -> Any:
    if impression.request_id.startswith("boomclose"):
        raise RuntimeError(f"injected fault closing {impression.request_id}")
    return _close(user, glob, impression, cfg)


_flush = BatchSender.flush


async def refusing_flush(self: BatchSender) -> int:
    marker = os.environ.get("FAULTY_FLUSH_MARKER")
    queued = [r for r in self._queue if b"failflush" in (r[3] or b"")]
    if marker and queued and not Path(marker).exists():
        Path(marker).touch()
        raise ConnectionError("injected: the broker refused the batch")
    return await _flush(self)


BatchSender.flush = refusing_flush  # type: ignore[method-assign]
worker_app.on_feedback = exploding_feedback  # type: ignore[assignment]
worker_app.close_json = exploding_close  # type: ignore[assignment]
# Guarded: with `engine = "process"` the engine's child (multiprocessing's spawn) imports
# this module again as `__mp_main__`, which applies the faults above there too.
if __name__ == "__main__":
    main()

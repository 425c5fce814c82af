"""The worker's engine in a child process (`[streams] engine = "process"`, issue 12).

Faust hands the agent one message at a time, ≈ 190 µs of its own Python per event on this
machine, and the `Processor` (windows, state, samples, deliveries) costs about as much
again. In one process the two take turns on one core. Here the `Processor` runs in a child
process with its own producer, so Faust's delivery of the next batch overlaps the child's
work on the last one: through worker and sink into Delta on 2 cores, 3,076 events/s
against 2,539 in-process in the same run (`bench.pipeline --compare-engine`).

What stays true (the guarantees of `streams.app`):
- the child handles messages in the order the parent sent them, so batches, tick checks
  and revocations are seen in the order Faust produced them;
- the parent acknowledges a batch's events (`stream.ack`, so their offsets become
  committable) only after the child said the batch is done, i.e. after its samples, dead
  letters and state records are on the broker (`Processor.handle_batch`);
- a child that dies takes the parent with it (exit `EXIT_UNDELIVERED`: un-acknowledged
  events are replayed after a restart), and a parent that dies takes the child with it
  (`PR_SET_PDEATHSIG`), so no orphan writes after its group moved on.

The child is started with multiprocessing's "spawn", which imports the parent's main
module again (as `__mp_main__`) unless it is a package's `__main__`: a script that runs
the worker must guard its entry point with `if __name__ == "__main__":` (the `toolrec`
command does).

Parent side: `EngineProcess`; child side: `serve`. Imports faust, streams.app and the
stdlib.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any, cast

import faust
from faust.types import TP

from contracts.privacy import PiiPolicy
from streams.app import EXIT_UNDELIVERED, InlineEngine, Processor, Source, source_of, tune_gc
from streams.config import StreamsConfig
from toolrec.kafka import KafkaConfig

log = logging.getLogger(__name__)

# The log line format of Faust's workers (mode's), so progress lines parse the same.
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 30.0


class EngineProcess:
    """The parent's handle on the child: `start`, then `submit` batches (in order) and ask
    it things (`caught_up`, `forget`); `stop` ends it after what was sent."""

    def __init__(self, cfg: StreamsConfig, kafka: KafkaConfig, *,
                 user_id_key: bytes | None, pii: PiiPolicy | None, loglevel: str) -> None:
        self._args = (cfg, kafka, user_id_key, pii, loglevel)
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._outbox: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._sequence = 0
        self._sender: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Spawn the child (a fresh interpreter: forking a process with Faust's threads and
        loop is unsafe). Call from the main thread: `PR_SET_PDEATHSIG` fires when the
        thread that created the child ends."""
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(target=serve, args=(child_end, os.getpid(), *self._args),
                                  name="toolrec-engine", daemon=True)
        process.start()
        child_end.close()
        self._conn, self._process = parent_end, process
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_end.fileno(), self._on_readable)
        self._sender = loop.create_task(self._send_forever())
        log.info("engine process %d started", process.pid)

    async def run(self, stream: faust.Stream[bytes]) -> None:
        """The agent's body: batches without Faust's acknowledgement (`noack_take`: its
        body must return at once for Faust to go on delivering), each handed to the child;
        a batch's events are acknowledged when the child is done with it. At most
        `engine_inflight_batches` are with the child; then the agent waits, which stops
        Faust's delivery (back pressure)."""
        self.start()
        cfg = self._args[0]
        inflight: list[asyncio.Task[None]] = []
        batches = stream.noack_take(cfg.batch_max_events, within=cfg.batch_within_s)
        async for batch in batches:
            events = cast(list[faust.types.EventT[bytes]], batch)  # typed as values: events
            inflight = [task for task in inflight if not task.done()]
            while len(inflight) >= cfg.engine_inflight_batches:
                await inflight[0]
                inflight = [task for task in inflight if not task.done()]
            done = self.submit([source_of(event) for event in events])
            inflight.append(asyncio.ensure_future(_acknowledge(stream, events, done)))

    def submit(self, batch: list[Source]) -> asyncio.Future[Any]:
        """Queue a batch for the child; the future is done when its outputs are on the
        broker (raises nothing: a child that fails ends this process)."""
        return self._request("batch", batch)

    async def caught_up(self, partitions: list[int], highwater: Mapping[TP, int | None]
                        ) -> list[int]:
        """`streams.app.confirmed_caught_up`, answered by the child after every batch sent
        before; `highwater` is the consumer's, read by the caller now. None before the
        agent started the child (it has handled nothing)."""
        if self._process is None:
            return []
        result: list[int] = await self._request("caught_up", (partitions, highwater))
        return result

    async def forget(self, partitions: set[int]) -> None:
        """The child drops the partitions' state once the batches sent before are done."""
        if self._process is not None:
            await self._request("forget", partitions)

    def report(self, partitions: list[int]) -> None:
        """The child logs its progress line (`Processor.report`)."""
        if self._process is not None:
            self._request("report", partitions)

    async def stop(self) -> None:
        """Let the child finish what was sent, close its producer and exit."""
        if self._process is None or self._stopping:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(self._request("stop", None), STOP_TIMEOUT_S)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("engine process did not stop cleanly (%s); killing it", exc)
        await asyncio.to_thread(self._process.join, 5)
        if self._process.is_alive():
            self._process.kill()
        asyncio.get_running_loop().remove_reader(self._conn.fileno())  # type: ignore[union-attr]
        if self._sender is not None:
            self._sender.cancel()

    def _request(self, kind: str, payload: Any) -> asyncio.Future[Any]:
        self._sequence += 1
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[self._sequence] = reply
        self._outbox.put_nowait((kind, self._sequence, payload))
        return reply

    async def _send_forever(self) -> None:
        """One sender, in order; pickling and a full pipe block a thread, not the loop
        (Faust's heartbeats run on it)."""
        assert self._conn is not None
        while True:
            message = await self._outbox.get()
            try:
                await asyncio.to_thread(self._conn.send, message)
            except (OSError, ValueError) as exc:
                self._child_gone(f"cannot send to the engine process: {exc}")

    def _on_readable(self) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                sequence, result = self._conn.recv()
                reply = self._replies.pop(sequence)
                if not reply.done():
                    reply.set_result(result)
        except (EOFError, OSError) as exc:
            if self._stopping:  # it answered "stop" after everything sent before
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
                return
            self._child_gone(f"the engine process ended ({exc!r})")

    def _child_gone(self, why: str) -> None:
        """Batches the child had may not be on the broker: stop without acknowledging them
        (a restart replays them), as `Processor.handle_batch` does."""
        code = self._process.exitcode if self._process is not None else None
        log.critical("%s, exit code %s; stopping without acknowledging its batches", why, code)
        logging.shutdown()
        os._exit(EXIT_UNDELIVERED)


async def _acknowledge(stream: faust.Stream[bytes], events: list[faust.types.EventT[bytes]],
                       done: asyncio.Future[Any]) -> None:
    """Once the child is done with the batch, its offsets may be committed. The child
    finishes batches in order, so their acknowledgements come in order too."""
    await done
    for event in events:
        await stream.ack(event)


# -- the child -------------------------------------------------------------------------
def serve(conn: Connection, parent_pid: int, cfg: StreamsConfig, kafka: KafkaConfig,
          user_id_key: bytes | None, pii: PiiPolicy | None, loglevel: str) -> None:
    """The child's main: a `Processor` answering the parent's messages, in order."""
    _die_with(parent_pid)
    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    processor = Processor(None, cfg, kafka, user_id_key=user_id_key,  # type: ignore[arg-type]
                          pii=pii)
    tune_gc()
    asyncio.run(_answer(conn, processor))


def _die_with(parent_pid: int) -> None:
    """SIGKILL this process when its parent ends (Linux); exit now if it already did."""
    # Not Linux: no prctl, and the parent's pipe closing ends us instead (`_answer`).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(EXIT_UNDELIVERED)


async def _answer(conn: Connection, processor: Processor) -> None:
    inbox: asyncio.Queue[tuple[str, int, Any] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    # A thread reads the pipe all the time, so the parent's next batch arrives while this
    # one is being handled.
    threading.Thread(target=_read_forever, args=(conn, inbox, loop), daemon=True).start()
    handlers = _handlers(InlineEngine(processor))
    while (message := await inbox.get()) is not None:
        kind, sequence, payload = message
        result = await handlers[kind](payload)
        conn.send((sequence, result))
        if kind == "stop":
            return
    # The parent is gone: what it did not acknowledge is replayed by the next owner.
    os._exit(EXIT_UNDELIVERED)


def _read_forever(conn: Connection, inbox: asyncio.Queue[tuple[str, int, Any] | None],
                  loop: asyncio.AbstractEventLoop) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            loop.call_soon_threadsafe(inbox.put_nowait, None)
            return
        loop.call_soon_threadsafe(inbox.put_nowait, message)


def _handlers(engine: InlineEngine) -> dict[str, Callable[[Any], Any]]:
    """What the child does with each kind of message: `InlineEngine`'s answers."""
    async def batch(sources: list[Source]) -> None:
        await engine.processor.handle_batch(sources)

    async def caught_up(payload: tuple[list[int], Mapping[TP, int | None]]) -> list[int]:
        return await engine.caught_up(*payload)

    async def forget(partitions: set[int]) -> None:
        await engine.forget(partitions)

    async def report(partitions: list[int]) -> None:
        engine.report(partitions)

    return {"batch": batch, "caught_up": caught_up, "forget": forget, "report": report,
            "stop": lambda _: engine.stop()}

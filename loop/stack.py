"""The processes of a local loop, owned by PID and always stopped: broker (+ topics), Faust
worker, Delta sink, API server and retraining daemon.

    with LoopStack(state_dir, env) as stack:      # env: TOOLREC_* settings of this run
        stack.start_broker()
        stack.start("worker", ["streams", "worker"], ready=stack.log_matches("worker", …))
        ...
    # leaving the block (normally, on an exception, on Ctrl-C or SIGTERM) stops them all,
    # newest first: SIGTERM, then SIGKILL after a grace period — never by name.

Every component runs as `python -m toolrec …` in its own session (so a Ctrl-C in the
terminal reaches only this process, which then stops them in order) and logs to
`<state_dir>/logs/<name>.log`.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from infra.processes import spawn, stop_pid, tail
from loop.errors import LoopError

log = logging.getLogger(__name__)


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout_s: float

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class LoopStack:
    """Starts and stops the loop's processes. See the module docstring."""

    def __init__(self, state_dir: Path, env: Mapping[str, str]) -> None:
        self.state_dir = Path(state_dir)
        self.env = dict(env)
        self.components: list[Component] = []
        self.broker: Any = None
        self._previous_sigterm: Any = None

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LoopStack:
        self._previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)

    def start_broker(self, port: int = 0) -> str:
        """A tansu broker (memory engine) on 127.0.0.1 with the project's topics; returns
        its bootstrap servers."""
        from infra.broker import LocalStack

        self.broker = LocalStack(self.state_dir / "broker", storage="memory", broker_port=port)
        self.broker.start()
        return str(self.broker.broker.bootstrap_servers)

    def launch(self, name: str, args: Sequence[str], *, stop_timeout_s: float = 20.0,
               env: Mapping[str, str] | None = None) -> Component:
        """Run `python -m toolrec <args>` in the background (see `wait_ready`); `env` adds
        variables for this component only (e.g. its thread count)."""
        log_path = self.state_dir / "logs" / f"{name}.log"
        proc = spawn([sys.executable, "-m", "toolrec", *args], log_path=log_path,
                     env={**self.env, **(env or {})})
        component = Component(name, proc, log_path, stop_timeout_s)
        self.components.append(component)
        return component

    @staticmethod
    def wait_ready(component: Component, ready: Callable[[Component], bool], *,
                   timeout_s: float = 300.0) -> Component:
        """Wait until `ready(component)`; fail with its log tail if it dies or times out."""
        deadline = time.monotonic() + timeout_s
        while not ready(component):
            if not component.alive():
                raise LoopError(f"{component.name} exited during start-up (code "
                                f"{component.proc.returncode}); log {component.log_path}:\n"
                                f"{tail(component.log_path, 30)}")
            if time.monotonic() > deadline:
                raise LoopError(f"{component.name} not ready after {timeout_s:.0f} s; log "
                                f"{component.log_path}:\n{tail(component.log_path, 30)}")
            time.sleep(0.25)
        log.info("%s ready (pid %d, log %s)", component.name, component.proc.pid,
                 component.log_path)
        return component

    def start(self, name: str, args: Sequence[str], *, ready: Callable[[Component], bool],
              timeout_s: float = 300.0, stop_timeout_s: float = 20.0) -> Component:
        """`launch` and `wait_ready` in one."""
        component = self.launch(name, args, stop_timeout_s=stop_timeout_s)
        return self.wait_ready(component, ready, timeout_s=timeout_s)

    def check_alive(self) -> None:
        """Raise if a component died (its log tail says why)."""
        for component in self.components:
            if not component.alive():
                raise LoopError(f"{component.name} exited unexpectedly (code "
                                f"{component.proc.returncode}); log {component.log_path}:\n"
                                f"{tail(component.log_path, 30)}")

    def stop(self, name: str) -> None:
        """Stop one component now (the others keep running)."""
        for component in [c for c in self.components if c.name == name]:
            self.components.remove(component)
            if component.alive():
                log.info("stopping %s (pid %d)", component.name, component.proc.pid)
                stop_pid(component.proc.pid, timeout_s=component.stop_timeout_s)

    def stop_all(self) -> None:
        """Stop every component, newest first, then the broker. Safe to call twice."""
        while self.components:
            component = self.components.pop()
            if component.alive():
                log.info("stopping %s (pid %d)", component.name, component.proc.pid)
                stop_pid(component.proc.pid, timeout_s=component.stop_timeout_s)
        if self.broker is not None:
            log.info("stopping the broker")
            self.broker.stop()
            self.broker = None

    # ---------------------------------------------------------------- readiness checks
    @staticmethod
    def log_matches(pattern: str) -> Callable[[Component], bool]:
        regex = re.compile(pattern)
        return lambda component: bool(regex.search(component.log()))


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the run like Ctrl-C does: the `finally` blocks stop the processes."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def settings_env(values: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, str]:
    """{"lake": {"root": "x"}} → {"TOOLREC_LAKE__ROOT": "x"} (pydantic-settings' nesting)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(settings_env(value, (*path, key)))
        else:
            out["TOOLREC_" + "__".join((*path, key)).upper()] = str(value)
    return out


def thread_env(threads: int) -> dict[str, str]:
    """Caps a component's OpenMP/MKL threads (torch's intra-op pool starts with this size).
    On 2 shared cores, processes that each spin two threads slow one another down."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}

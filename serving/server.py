"""Run the API in a background thread of this process (tests, benchmarks, the demo loop).

    with ThreadedServer(create_app(settings), port=free_port()) as server:
        httpx.get(server.url + "/healthz")
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from toolrec.errors import ServingError

__all__ = ["ThreadedServer"]


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1:`port` in a daemon thread; lifespan included."""

    def __init__(self, app: Any, *, port: int, host: str = "127.0.0.1",
                 log_level: str = "warning", start_timeout_s: float = 120.0) -> None:
        import uvicorn

        self.host, self.port = host, port
        self.start_timeout_s = start_timeout_s
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                log_config=None, lifespan="on", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise ServingError(f"the API on {self.url} exited during start-up; see the log")
            if time.monotonic() > deadline:
                self.stop()
                raise ServingError(f"the API on {self.url} did not start within "
                                   f"{self.start_timeout_s} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

"""Durability helpers every stage shares: wall-clock milliseconds, an inter-process file
lock, directory fsync, atomic file replacement and create-once files.

Owned here (the core) because the trainer's registry and refresh, serving's spool and the
loop's demo all need them and none may import another. May import the standard library
and `toolrec.errors` only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from toolrec.errors import LockBusyError

__all__ = ["FileLock", "LockBusyError", "atomic_write_text", "create_once_text", "fsync_dir",
           "now_ms"]


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (the unit of every event `ts`)."""
    return int(time.time() * 1000)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, *, tmp_suffix: str = ".tmp") -> None:
    """Replace `path` with `text` so that a reader or a crash sees the old or the new content,
    never a mix: write a sibling temporary file, fsync it, rename it over, fsync the directory."""
    path = Path(path)
    tmp = path.with_suffix(tmp_suffix)
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def create_once_text(path: Path, make_text: Callable[[], str], *, mode: int = 0o600) -> str:
    """The content of `path`, created with `make_text()` (file mode `mode`) if it does not
    exist yet. Safe when several processes start at once: each writes a private temporary
    file and hard-links it into place, which succeeds for exactly one; every caller then reads
    the winner's complete content (never a half-written or an empty file)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(make_text())
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked first
                os.link(tmp, path)
            fsync_dir(path.parent)
        finally:
            tmp.unlink()
    return path.read_text()


class FileLock:
    """An exclusive `flock` on a file: held by one process at a time, released by the OS
    when the holder dies (so a SIGKILLed refresh never leaves a stale lock)."""

    def __init__(self, path: Path, *, what: str = "lock") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self, *, timeout_s: float | None = 0.0) -> None:
        """Take the lock; wait up to `timeout_s` (None: forever). Raises LockBusyError."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockBusyError(
                        f"the {self.what} {self.path} is held by {holder or 'another process'}; "
                        "wait for it to finish (the OS frees it if that process dies)"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def held(self, *, timeout_s: float | None = 0.0) -> Iterator[None]:
        self.acquire(timeout_s=timeout_s)
        try:
            yield
        finally:
            self.release()


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""

"""A durable, append-only on-disk log of outgoing events and the cursor of what was sent.

Every event serving emits (impressions, feedback) is appended here *before* the HTTP
response, then a sender (`serving.publisher`) ships it to Kafka in log order. The broker
being down therefore only makes the log grow; nothing is lost and order is kept.

Layout of `<spool_dir>/`:

    seg-000000000001.log   records with seq 1, 2, …  (a new segment at `segment_bytes`)
    seg-000000004711.log   named after its first seq
    cursor.json            {"acked": seq, "inflight": seq, "offsets": {...}}

A record is `MAGIC | seq (u64) | length (u32) | crc32 (u32) | payload` where the payload is
the JSON object {"id", "topic", "key", "value"}. Appends are fsynced (configurable). On
open, a torn record at the tail of the last segment (a crash mid-append) is cut off; a bad
record anywhere else is corruption and raises `SpoolError` naming file and position.

The cursor is written atomically (temporary file, fsync, rename, fsync of the directory).
`acked` is the last seq known to be in Kafka; `inflight` the last seq handed to a producer.
Sequences in (acked, inflight] are *uncertain* after a crash or a failed send: the sender
checks them against the topic before sending them again, so none is sent twice.
`offsets` holds, per `topic:partition`, an offset at or below the first uncertain record
(where that check starts reading). Segments whose records are all acked are deleted.

Forgetting a user (`Spool.forget`) rewrites each of the user's records in place as an
erased record of the same length (empty topic, key and value; new checksum); the sender
skips erased records. Events are keyed by the pseudonymous user, so the key finds them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from toolrec.durable import FileLock, LockBusyError, atomic_write_text, fsync_dir
from toolrec.errors import ServingError

__all__ = ["Cursor", "OutRecord", "Spool", "SpoolError", "SpoolReader", "read_spool"]

log = logging.getLogger(__name__)

MAGIC = b"\xa5\x5a"
HEADER = struct.Struct(">2sQII")  # magic, seq, payload length, crc32
MAX_PAYLOAD = 16 * 1024 * 1024
CURSOR_FILE = "cursor.json"
LOCK_FILE = ".lock"
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".log"


class SpoolError(ServingError):
    """The spool directory is unreadable or corrupt."""


@dataclass(frozen=True)
class OutRecord:
    """One event to send: its id (for de-duplication), topic, key and JSON value."""

    id: str
    topic: str
    key: str
    value: str

    def encode(self) -> bytes:
        body = {"id": self.id, "topic": self.topic, "key": self.key, "value": self.value}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> OutRecord:
        body = json.loads(payload)
        return cls(id=body["id"], topic=body["topic"], key=body["key"], value=body["value"])


@dataclass(frozen=True)
class Cursor:
    """Sending progress; see the module docstring."""

    acked: int = 0
    inflight: int = 0
    offsets: dict[str, int] = field(default_factory=dict)

    @property
    def uncertain(self) -> bool:
        return self.inflight > self.acked


def _segment_name(first_seq: int) -> str:
    return f"{SEGMENT_PREFIX}{first_seq:012d}{SEGMENT_SUFFIX}"


def _read_record(handle: IO[bytes], path: Path) -> tuple[int, OutRecord] | None:
    """The next record at the handle's position, or None at a clean or torn end.

    Raises SpoolError on a record whose header is complete but whose content is wrong,
    with the position, so the caller decides whether it is a torn tail or corruption.
    """
    start = handle.tell()
    header = handle.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    magic, seq, length, crc = HEADER.unpack(header)
    if magic != MAGIC or length > MAX_PAYLOAD:
        raise SpoolError(f"{path}: bad record header at byte {start}")
    payload = handle.read(length)
    if len(payload) < length:
        return None
    if zlib.crc32(payload) != crc:
        raise SpoolError(f"{path}: checksum mismatch of record {seq} at byte {start}")
    return seq, OutRecord.decode(payload)


def _pread(handle: IO[bytes], position: int, size: int) -> bytes:
    handle.seek(position)
    return handle.read(size)


def _torn_at(path: Path, position: int) -> bool:
    """Whether a bad record at `position` is the remains of an interrupted last append: it
    is the last record of the file, or only zero bytes follow (a crash can leave the file
    extended with unwritten blocks). Anything else is corruption and must not be cut."""
    with path.open("rb") as handle:
        handle.seek(position)
        rest = handle.read()
    if not rest.strip(b"\0"):
        return True
    if len(rest) < HEADER.size:
        return True
    length: int = HEADER.unpack(rest[:HEADER.size])[2]
    return HEADER.size + length >= len(rest)


class Spool:
    """The log and its cursor. Thread-safe: request threads append, one sender reads."""

    def __init__(self, directory: Path, *, segment_bytes: int = 16 << 20, fsync: bool = True):
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        # Held by `forget` while it rewrites records and by readers around each record read;
        # `erasures` tells a reader to drop its buffered bytes (they may predate a rewrite).
        self.erase_lock = threading.Lock()
        self.erasures = 0
        self._handle: IO[bytes] | None = None
        self._active: Path | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._owner = FileLock(self.directory / LOCK_FILE, what="spool")
        try:
            self._owner.acquire(timeout_s=0)
        except LockBusyError as exc:
            raise SpoolError(f"{exc}: one process per spool; give each serving process its "
                             "own serving.spool_dir") from exc
        try:
            self._cursor = self._read_cursor()
            self._segments = self._scan_segments()
            self.last_seq = max(self._recover_tail(), self._cursor.acked)
        except BaseException:
            self._owner.release()
            raise

    # ------------------------------------------------------------------ opening
    def _read_cursor(self) -> Cursor:
        path = self.directory / CURSOR_FILE
        if not path.exists():
            return Cursor()
        try:
            data = json.loads(path.read_text())
            return Cursor(int(data["acked"]), int(data["inflight"]),
                          {str(k): int(v) for k, v in data.get("offsets", {}).items()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpoolError(
                f"the spool cursor {path} is unreadable ({exc}); it is only replaced atomically, "
                "so this is disk damage: restore it or remove the spool directory (its unsent "
                "events are then lost)"
            ) from exc

    def _scan_segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
            digits = path.name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                found.append((int(digits), path))
        return sorted(found)

    def _recover_tail(self) -> int:
        """Validate every segment; cut a torn tail off the last one. Returns the last seq."""
        last = 0
        for index, (_, path) in enumerate(self._segments):
            is_last = index == len(self._segments) - 1
            with path.open("rb") as handle:
                while True:
                    position = handle.tell()
                    try:
                        record = _read_record(handle, path)
                    except SpoolError:
                        if not (is_last and _torn_at(path, position)):
                            raise
                        record = None
                    if record is None:
                        if position != path.stat().st_size:
                            self._truncate(path, position, is_last)
                        break
                    last = record[0]
        return last

    def _truncate(self, path: Path, position: int, is_last: bool) -> None:
        if not is_last:
            raise SpoolError(
                f"{path} ends with an incomplete record at byte {position} although later "
                "segments exist: the spool is damaged; move the directory aside to inspect it"
            )
        log.warning("spool: cutting a torn record off %s at byte %d (crash mid-append)",
                    path, position)
        with path.open("r+b") as handle:
            handle.truncate(position)
            os.fsync(handle.fileno())

    # ------------------------------------------------------------------ writing
    def append(self, records: Sequence[OutRecord]) -> int:
        """Append records durably, in order; returns the seq of the last one."""
        if not records:
            return self.last_seq
        with self._lock:
            handle = self._writable()
            chunks, seq = [], self.last_seq
            for record in records:
                seq += 1
                payload = record.encode()
                chunks.append(HEADER.pack(MAGIC, seq, len(payload), zlib.crc32(payload))
                              + payload)
            start = handle.tell()
            try:
                handle.write(b"".join(chunks))
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            except OSError as exc:  # disk full, I/O error: leave no partial record behind
                with contextlib.suppress(OSError):
                    handle.truncate(start)
                raise SpoolError(f"cannot append to the spool {self._active}: {exc}; free "
                                 "disk space or fix the volume") from exc
            self.last_seq = seq
            self._appended.notify_all()
            return seq

    def _writable(self) -> IO[bytes]:
        """The handle of the active segment; rolls to a new one past `segment_bytes`."""
        if self._handle is not None and self._handle.tell() < self.segment_bytes:
            return self._handle
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._segments and self._handle is None and self._active is None:
            _, path = self._segments[-1]  # reopen the last segment after a restart
            if path.stat().st_size < self.segment_bytes:
                self._active = path
                self._handle = path.open("ab")
                return self._handle
        first = self.last_seq + 1
        path = self.directory / _segment_name(first)
        self._handle = path.open("ab")
        self._active = path
        self._segments.append((first, path))
        fsync_dir(self.directory)
        return self._handle

    def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Block until a record with `seq` exists (or the timeout); True if it does."""
        with self._appended:
            return self._appended.wait_for(lambda: self.last_seq >= seq, timeout=timeout_s)

    def wake(self) -> None:
        """Wake a sender blocked in `wait_for` (used at shutdown)."""
        with self._appended:
            self._appended.notify_all()

    # ------------------------------------------------------------------ cursor
    @property
    def cursor(self) -> Cursor:
        return self._cursor

    @property
    def depth(self) -> int:
        """Events spooled but not yet acknowledged by the broker."""
        return self.last_seq - self._cursor.acked

    def mark(self, cursor: Cursor) -> None:
        """Persist the cursor atomically, then delete segments it fully covers."""
        body = {"acked": cursor.acked, "inflight": cursor.inflight,
                "offsets": dict(sorted(cursor.offsets.items()))}
        atomic_write_text(self.directory / CURSOR_FILE, json.dumps(body))
        self._cursor = cursor
        self._drop_sent_segments()

    def _drop_sent_segments(self) -> None:
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] <= self._cursor.acked + 1:
                _, path = self._segments.pop(0)
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ erasing
    def forget(self, key: str) -> int:
        """Erase every record keyed by `key` (a pseudonymous user) in place: its payload
        becomes an `OutRecord` with empty topic, key and value (padded to the same length,
        new checksum), which the sender acknowledges without sending. Sent records still on
        disk are erased too. Returns how many records were erased."""
        erased = 0
        with self._lock, self.erase_lock:
            if self._handle is not None:
                self._handle.flush()
            for _, path in list(self._segments):
                erased += self._erase_in(path, key)
            self.erasures += 1
        if erased:
            log.info("spool: erased %d records of one forgotten user", erased)
        return erased

    def _erase_in(self, path: Path, key: str) -> int:
        positions: list[tuple[int, int, OutRecord]] = []
        with path.open("rb") as handle:
            while True:
                start = handle.tell()
                record = _read_record(handle, path)
                if record is None:
                    break
                if record[1].key == key:
                    positions.append((start, record[0], record[1]))
        if not positions:
            return 0
        with path.open("r+b") as handle:
            for start, seq, found in positions:
                length = HEADER.unpack(_pread(handle, start, HEADER.size))[2]
                payload = OutRecord(id=found.id, topic="", key="", value="").encode()
                payload = payload.ljust(length, b" ")  # JSON allows trailing spaces
                handle.seek(start)
                handle.write(HEADER.pack(MAGIC, seq, length, zlib.crc32(payload)) + payload)
            handle.flush()
            os.fsync(handle.fileno())
        return len(positions)

    # ------------------------------------------------------------------ reading
    def reader(self, start_seq: int) -> SpoolReader:
        """A sequential reader from `start_seq` (inclusive)."""
        return SpoolReader(self, start_seq)

    def segments(self) -> list[tuple[int, Path]]:
        with self._lock:
            return list(self._segments)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
                self._active = None
        self._owner.release()


class SpoolReader:
    """Reads records in seq order, following new appends and new segments."""

    def __init__(self, spool: Spool, start_seq: int) -> None:
        self.spool = spool
        self.next_seq = max(start_seq, 1)
        self._path: Path | None = None
        self._handle: IO[bytes] | None = None
        self._erasures = spool.erasures

    def _segment_of(self, seq: int) -> Path | None:
        """The segment that holds `seq` (the last one starting at or before it)."""
        candidates = [p for first, p in self.spool.segments() if first <= seq]
        return candidates[-1] if candidates else None

    def _switch_segment(self) -> bool:
        """Open the segment of `next_seq`; False when that is the one already open."""
        path = self._segment_of(self.next_seq)
        if path is None or path == self._path:
            return False
        self.close()
        self._path, self._handle = path, path.open("rb")
        return True

    def read(self, limit: int) -> list[tuple[int, OutRecord]]:
        """Up to `limit` records from `next_seq` on that are already appended."""
        out: list[tuple[int, OutRecord]] = []
        while len(out) < limit and self.next_seq <= self.spool.last_seq:
            if self._handle is None and not self._switch_segment():
                break
            record = self._next_in_segment()
            if record is None:  # end of this segment, or the writer is mid-append
                if not self._switch_segment():
                    break
                continue
            seq = record[0]
            if seq < self.next_seq:
                continue  # skipping up to the start position
            if seq != self.next_seq:
                raise SpoolError(f"{self._path}: expected record {self.next_seq}, found {seq}")
            out.append(record)
            self.next_seq += 1
        return out

    def _next_in_segment(self) -> tuple[int, OutRecord] | None:
        assert self._handle is not None and self._path is not None
        with self.spool.erase_lock:
            if self._erasures != self.spool.erasures:  # buffered bytes may predate an erasure
                position = self._handle.tell()
                self._handle.close()
                self._handle = self._path.open("rb")
                self._handle.seek(position)
                self._erasures = self.spool.erasures
            position = self._handle.tell()
            record = _read_record(self._handle, self._path)
        if record is None:
            self._handle.seek(position)  # the writer may still be appending
        return record

    def iter_all(self) -> Iterator[tuple[int, OutRecord]]:
        """Every record from `next_seq` to the current end (tests and tools)."""
        while True:
            batch = self.read(1024)
            if not batch:
                return
            yield from batch

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._path = None, None


def read_spool(directory: Path) -> list[tuple[int, OutRecord]]:
    """Every complete record of a spool directory, read-only and without the lock (for
    inspection and tests; a live server may be appending)."""
    out: list[tuple[int, OutRecord]] = []
    for path in sorted(Path(directory).glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")):
        with path.open("rb") as handle:
            while (record := _read_record(handle, path)) is not None:
                out.append(record)
    return out

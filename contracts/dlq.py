"""The dead-letter record of `toolrec.dlq` (DESIGN.md §3): the raw bytes unchanged, with
where they came from and why in Kafka headers.

Every stage that rejects a record (the streams worker, the lake sink) builds its headers
here, so a DLQ reader sees one layout: `reason` (machine-readable, e.g. `missing_field`),
`field` (the offending field), `detail` (human text, at most `DETAIL_LIMIT` characters),
`stage` (who rejected it), `source_topic` / `source_partition` / `source_offset`, and
`truncated: true` when the value was cut to fit the broker's size limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DETAIL_LIMIT", "DeadLetter", "Stage"]

DETAIL_LIMIT = 500
Stage = Literal["streams", "lakehouse"]


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """Why and from where one record was dead-lettered (its value travels unchanged)."""

    reason: str
    field: str
    detail: str
    stage: Stage
    source_topic: str
    source_partition: int
    source_offset: int
    truncated: bool = False

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers, in a fixed order (`truncated` only when the value was cut)."""
        pairs = [
            ("reason", self.reason),
            ("field", self.field),
            ("detail", self.detail[:DETAIL_LIMIT]),
            ("stage", self.stage),
            ("source_topic", self.source_topic),
            ("source_partition", str(self.source_partition)),
            ("source_offset", str(self.source_offset)),
        ]
        if self.truncated:
            pairs.append(("truncated", "true"))
        return [(k, v.encode()) for k, v in pairs]

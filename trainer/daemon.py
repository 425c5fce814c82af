"""The retraining daemon (`toolrec trainer daemon`): APScheduler 3.11 runs a refresh check on
an interval; a refresh runs when at least M new samples exist.

- Single-flight: one job at a time in the process (one worker thread, `max_instances=1`,
  missed runs coalesced) and across processes (the refresh's file lock; a tick that finds
  it taken — e.g. an on-demand `toolrec trainer refresh` — skips and logs who holds it).
- Graceful shutdown: SIGTERM / SIGINT set a stop event; no new tick starts, a running
  refresh stops at its next training step (`RefreshCancelled`: nothing is registered, its
  temporary files are removed) and the process exits 0. A second signal exits at once —
  still safe, because a killed refresh leaves the registry consistent (`trainer.refresh`).
- At start the champion is re-announced on `toolrec.models`, so a promotion whose
  announcement was lost in a crash still reaches serving.
- Progress: each tick logs the pending sample count; a refresh logs step, samples/s and ETA.
- Lake upkeep: every `training.lake_upkeep_interval_s` the sink's tables are compacted and
  vacuumed (`lake_upkeep`; the same single worker thread, so never during a refresh): a
  refresh reads a few files per day instead of one per sink commit, and the disk holds
  removed files only for `lake.vacuum_retention_hours`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from toolrec.errors import GeneratorError, LockBusyError, TrainerError

if TYPE_CHECKING:
    from trainer.refresh import Refresher, RefreshResult

__all__ = ["TickResult", "TrainerDaemon"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickResult:
    """What one scheduled check did: 'waiting' (< M samples), 'busy' (lock held
    elsewhere), 'failed', 'cancelled' or the refresh's outcome ('promoted', 'rejected',
    'not_enough_evidence', 'candidate', 'skipped')."""

    status: str
    detail: str
    refresh: RefreshResult | None = None


class TrainerDaemon:
    """Checks for new samples every `interval_s` and refreshes when there are >= M."""

    def __init__(self, refresher: Refresher, *, interval_s: float | None = None,
                 min_new_samples: int | None = None) -> None:
        training = refresher.training
        self.refresher = refresher
        self.interval_s = training.interval_s if interval_s is None else interval_s
        self.min_new = training.min_new_samples if min_new_samples is None else min_new_samples
        self.stop_event = threading.Event()
        self.ticks = 0
        self.history: list[TickResult] = []

    def tick(self) -> TickResult:
        """One check: count new samples, refresh if there are enough. Never raises for a
        failed refresh (the champion keeps serving; the next tick tries again)."""
        from trainer.refresh import RefreshCancelled

        self.ticks += 1
        if self.stop_event.is_set():
            return TickResult("cancelled", "daemon is stopping")
        try:
            pending = self.refresher.pending()
            if pending < self.min_new:
                log.info("tick %d: %d new samples, waiting for %d", self.ticks, pending,
                         self.min_new)
                return TickResult("waiting", f"{pending} < {self.min_new} new samples")
            log.info("tick %d: %d new samples: refreshing", self.ticks, pending)
            result = self.refresher.run(min_new_samples=self.min_new, stop=self.stop_event)
        except LockBusyError as exc:
            log.info("tick %d: skipped, another refresh is running (%s)", self.ticks, exc)
            return TickResult("busy", str(exc))
        except RefreshCancelled as exc:
            log.info("tick %d: refresh cancelled: %s", self.ticks, exc)
            return TickResult("cancelled", str(exc))
        except (TrainerError, GeneratorError) as exc:  # a model file the refresh loads
            log.error("tick %d: refresh failed, the champion keeps serving: %s", self.ticks, exc)
            return TickResult("failed", str(exc))
        return TickResult(result.outcome, result.reason, result)

    def lake_upkeep(self) -> dict[str, dict[str, int]]:
        """Compact the small files of `upkeep_tables` (one per sink commit), then vacuum the
        files removed longer than `lake.vacuum_retention_hours` ago; returns per table the
        files compacted and the expired ones vacuum listed (delta-rs lists an expired file on
        every run until the log forgets it, deleted or not). A failure is logged, never
        raised: the next run retries."""
        from deltalake.exceptions import DeltaError

        from lakehouse.maintenance import optimize, vacuum
        from lakehouse.tables import table_exists
        from toolrec.errors import LakeError

        done: dict[str, dict[str, int]] = {}
        lake = self.refresher.lake
        for name in self.refresher.training.upkeep_tables:
            if self.stop_event.is_set():
                break
            if not table_exists(lake, name):
                continue
            try:
                compacted = int(optimize(lake, name).get("numFilesRemoved", 0))
                done[name] = {"compacted": compacted, "expired": len(vacuum(lake, name))}
            except (LakeError, DeltaError, OSError) as exc:
                log.error("upkeep of %s failed (the next run retries): %s", name, exc)
        return done

    def run(self, *, install_signals: bool = True, max_ticks: int | None = None) -> None:
        """Block until SIGTERM / SIGINT (or `stop()`, or `max_ticks` checks), running ticks."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        if install_signals:
            self._install_signals()
        self._announce_champion()
        logging.getLogger("apscheduler.scheduler").addFilter(_skip_busy_notices)
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        job = self._job if max_ticks is None else self._counting_job(max_ticks)
        scheduler.add_job(job, IntervalTrigger(seconds=self.interval_s), id="refresh",
                          next_run_time=datetime.now())
        training = self.refresher.training
        if training.lake_upkeep_interval_s is not None:
            scheduler.add_job(self.lake_upkeep,
                              IntervalTrigger(seconds=training.lake_upkeep_interval_s),
                              id="lake-upkeep")
        scheduler.start()
        log.info("trainer daemon started: a check every %.0fs, refresh at >= %d new samples; "
                 "upkeep of %s every %s", self.interval_s, self.min_new,
                 ", ".join(training.upkeep_tables),
                 f"{training.lake_upkeep_interval_s:.0f}s" if training.lake_upkeep_interval_s
                 else "- (off)")
        try:
            while not self.stop_event.wait(0.5):
                pass
        finally:
            log.info("trainer daemon stopping: waiting for the running check to finish")
            scheduler.shutdown(wait=True)
            log.info("trainer daemon stopped after %d checks", self.ticks)

    def stop(self) -> None:
        self.stop_event.set()

    def _job(self) -> None:
        started = time.monotonic()
        result = self.tick()
        self.history.append(result)
        log.info("check finished: %s (%s) in %.1fs", result.status, result.detail,
                 time.monotonic() - started)

    def _counting_job(self, max_ticks: int) -> Any:
        def job() -> None:
            self._job()
            if self.ticks >= max_ticks:
                self.stop()
        return job

    def _install_signals(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            if self.stop_event.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                raise SystemExit(128 + signum)
            log.info("%s: stopping after the current step", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _announce_champion(self) -> None:
        try:
            self.refresher.registry.announce_champion()
        except TrainerError as exc:
            log.error("could not re-announce the champion: %s", exc)


def _skip_busy_notices(record: logging.LogRecord) -> bool:
    """Drop APScheduler's warning for every interval that passes during a long refresh
    (single-flight is intended; the refresh logs its own progress)."""
    return "maximum number of running instances reached" not in record.getMessage()

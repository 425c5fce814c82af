"""Which model serves, and replacing it without dropping a request.

`ModelManager` owns the serving `Generator`. A *reconcile* asks where the champion is
(the registry in `follow="registry"` mode, the configured directory in `"static"` mode),
and if that differs from what serves, loads it in the calling (background) thread,
verifies the adapter against its manifest, warms it up with one short generation and then
swaps one reference. Work already running keeps the generator it took (`snapshot()`), so
in-flight requests finish on the model they started with and report its version; the next
batch takes the new one. The replaced model stays loaded as `previous`, so a rollback to it
is a swap without a load. A failed load changes nothing: the current model keeps serving,
the failure is logged, counted (`toolrec_serving_swap_failures_total`) and shown by
`/readyz` and the admin endpoints.

Reconciles are single-flight (one lock) and are triggered by: start-up, every message on
`toolrec.models` (`serving.follower`), a periodic registry poll, and the admin endpoints.
The registry is the source of truth; an announcement is only a hint, used as the target
when the registry cannot be read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from contracts.models import BASE_VERSION, verify_artifact
from generator.loading import MODEL_LOAD_LOCK
from serving.config import ServingConfig
from serving.metrics import Metrics
from toolrec.errors import AnnounceError, ServingError

if TYPE_CHECKING:
    from generator.config import GeneratorConfig
    from generator.generator import Generator
    from lakehouse import ModelsTable

__all__ = [
    "LoadedModel",
    "ModelManager",
    "ModelTarget",
    "NothingToRollBack",
    "SwapOutcome",
]

log = logging.getLogger(__name__)


WARMUP_QUERY = "turn on battery saver"


class NothingToRollBack(ServingError):
    """A rollback was asked for but there is no model to go back to."""


@dataclass(frozen=True)
class ModelTarget:
    """What should serve: a version tag, its base model and optional LoRA adapter."""

    version: str
    base_model: Path
    adapter_dir: Path | None = None
    source: Literal["registry", "announcement", "static"] = "static"

    def same_model(self, other: ModelTarget | None) -> bool:
        return (other is not None and other.version == self.version
                and other.adapter_dir == self.adapter_dir and other.base_model == self.base_model)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded, warmed-up generator and where it came from."""

    target: ModelTarget
    generator: Generator
    load_s: float
    loaded_at: float

    @property
    def version(self) -> str:
        return self.target.version


@dataclass(frozen=True)
class SwapOutcome:
    """The result of one reconcile / rollback."""

    action: Literal["swapped", "unchanged", "failed"]
    version: str | None  # serving after the call
    previous: str | None  # serving before the call
    target: str | None
    load_s: float | None = None
    error: str | None = None
    reason: str = ""


Loader = Callable[[ModelTarget], "Generator"]


class ModelManager:
    """Loads, warms up and swaps the serving generator. Thread-safe."""

    def __init__(
        self,
        config: ServingConfig,
        generator_config: GeneratorConfig,
        *,
        metrics: Metrics,
        registry: ModelsTable | None = None,
        linker: Any = None,
    ) -> None:
        if config.follow == "registry" and registry is None:
            raise ServingError("follow='registry' needs the registry table (ModelsTable); "
                               "pass one or set serving.follow='static'")
        self.config = config
        self.generator_config = generator_config
        self.metrics = metrics
        self.registry = registry
        self.linker = linker
        self._current: LoadedModel | None = None
        self._previous: LoadedModel | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._hint: Mapping[str, Any] | None = None
        self._reason = ""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps = 0
        self.last_error: str | None = None
        self.last_outcome: SwapOutcome | None = None

    # ------------------------------------------------------------------ reading
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def snapshot(self) -> Generator | None:
        """The generator to use for one unit of work (keep it until the work is done)."""
        loaded = self._current
        return loaded.generator if loaded is not None else None

    @property
    def version(self) -> str | None:
        loaded = self._current
        return loaded.version if loaded is not None else None

    # ------------------------------------------------------------------ targets
    def _base_dir(self) -> Path:
        return Path(self.config.model_dir or self.generator_config.model_dir)

    def desired(self, hint: Mapping[str, Any] | None = None) -> ModelTarget:
        """Where the champion is now. Raises when it cannot be determined."""
        if self.config.follow == "static":
            adapter = self.config.adapter_dir
            version = self.config.model_version or (adapter.name if adapter else BASE_VERSION)
            return ModelTarget(version, self._base_dir(), adapter, "static")
        assert self.registry is not None
        try:
            record = self.registry.champion()
        except Exception as exc:  # registry unreadable: fall back to the announcement
            if hint is None or self._stale(hint):
                raise ServingError(f"cannot read the model registry {self.registry.uri}: "
                                   f"{exc}; the current model keeps serving") from exc
            log.warning("registry unreadable (%s); following the announcement of %s",
                        exc, hint.get("version"))
            return self._from_announcement(hint)
        if record is None:
            return ModelTarget(BASE_VERSION, self._base_dir(), None, "registry")
        return ModelTarget(record.version, Path(record.base_model), record.adapter_dir,
                           "registry")

    def _stale(self, hint: Mapping[str, Any]) -> bool:
        """An announcement older than the serving model's load (re-read after a reconnect,
        e.g. through tansu's low end offsets) must not move serving back."""
        loaded = self._current
        ts = hint.get("ts")
        return loaded is not None and (not isinstance(ts, int) or ts < loaded.loaded_at * 1000)

    def _from_announcement(self, hint: Mapping[str, Any]) -> ModelTarget:
        adapter = hint.get("adapter_path")
        base = hint.get("base_model")
        return ModelTarget(str(hint.get("version") or BASE_VERSION),
                           Path(base) if base else self._base_dir(),
                           Path(adapter) if adapter else None, "announcement")

    # ------------------------------------------------------------------ loading
    def load(self, target: ModelTarget) -> Generator:
        """Load `target` from local files, verify its adapter, warm it up."""
        from generator.config import DecodingConfig
        from generator.generator import Generator
        from generator.prompt import PromptInputs
        if target.adapter_dir is not None and target.source != "static":
            verify_artifact(target.adapter_dir, version=target.version)
        with MODEL_LOAD_LOCK:
            generator = Generator.load(target.base_model, target.adapter_dir,
                                       config=self.generator_config, linker=self.linker,
                                       model_version=target.version)
        if self.config.warmup_tokens:
            warm = DecodingConfig(temperature=0.0, max_new_tokens=max(4, self.config.warmup_tokens))
            generator.generate(PromptInputs(query=WARMUP_QUERY), n=1, decoding=warm)
        return generator

    def reconcile(
        self, *, force: bool = False, reason: str = "", hint: Mapping[str, Any] | None = None
    ) -> SwapOutcome:
        """Make the champion serve (load + warm-up + swap) if it does not already."""
        with self._lock:
            before = self.version
            try:
                target = self.desired(hint)
            except Exception as exc:
                return self._failed(before, None, exc, reason)
            if not force and self._current is not None and target.same_model(
                    self._current.target):
                return self._record(SwapOutcome("unchanged", before, before, target.version,
                                                reason=reason))
            if not force and self._previous is not None and target.same_model(
                    self._previous.target):
                return self._swap(self._previous, before, reason, reused=True)
            return self._load_and_swap(target, before, reason)

    def _load_and_swap(self, target: ModelTarget, before: str | None, reason: str) -> SwapOutcome:
        log.info("loading model %s (%s; %s) in the background", target.version, target.source,
                 reason or "reconcile")
        started = time.perf_counter()
        try:
            generator = self.load(target)
        except Exception as exc:  # a broken model must never take the server down
            return self._failed(before, target.version, exc, reason)
        load_s = time.perf_counter() - started
        self.metrics.load_seconds.observe(load_s)
        loaded = LoadedModel(target, generator, load_s, time.time())
        return self._swap(loaded, before, reason, reused=False)

    def _swap(self, loaded: LoadedModel, before: str | None, reason: str, *,
              reused: bool) -> SwapOutcome:
        old = self._current
        self._current = loaded  # the swap: one reference assignment
        self._previous = old
        self.swaps += 1
        self.last_error = None
        self.metrics.swaps.inc()
        self.metrics.set_model(loaded.version)
        log.info("now serving %s (was %s; %s%s)", loaded.version, before, reason or "reconcile",
                 ", reused the warm previous model" if reused else f", loaded in "
                 f"{loaded.load_s:.2f} s")
        return self._record(SwapOutcome("swapped", loaded.version, before, loaded.version,
                                        None if reused else loaded.load_s, reason=reason))

    def _failed(self, before: str | None, target: str | None, exc: Exception,
                reason: str) -> SwapOutcome:
        self.metrics.swap_failures.inc()
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.error("could not switch to model %s (%s): %s; %s keeps serving", target,
                  reason or "reconcile", self.last_error, before or "nothing")
        return self._record(SwapOutcome("failed", before, before, target, error=self.last_error,
                                        reason=reason))

    def _record(self, outcome: SwapOutcome) -> SwapOutcome:
        self.last_outcome = outcome
        return outcome

    # ------------------------------------------------------------------ rollback
    def rollback(self, to: str | None = None) -> SwapOutcome:
        """Roll the champion back (registry mode: in the registry, announced, then followed
        here; static mode: back to the previous in-memory model)."""
        if self.config.follow == "static":
            with self._lock:
                previous = self._previous
                if previous is None or (to is not None and previous.version != to):
                    raise NothingToRollBack(
                        f"no previous model {to or ''} in memory to roll back to (static mode "
                        "keeps only the last one); reload with the wanted model_dir instead")
                return self._swap(previous, self.version, "admin rollback", reused=True)
        assert self.registry is not None
        try:
            self.registry.rollback(to=to)
        except AnnounceError as exc:  # the registry changed; followers will poll it
            log.warning("rollback done in the registry but not announced: %s", exc)
        return self.reconcile(reason="admin rollback")

    # ------------------------------------------------------------------ background
    def request(self, reason: str, hint: Mapping[str, Any] | None = None) -> None:
        """Ask the background thread to reconcile soon (coalesces bursts)."""
        self._hint = hint
        self._reason = reason
        self._wake.set()

    def start(self) -> None:
        """Start the background thread; it makes the first load at once."""
        if self._thread is None:
            self._reason = "start-up"
            self._wake.set()
            self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.load_timeout_s)
            self._thread = None

    def _run(self) -> None:
        poll = self.config.registry_poll_s if self.config.follow == "registry" else 0.0
        while not self._stopping.is_set():
            woken = self._wake.wait(timeout=poll or None)
            if self._stopping.is_set():
                return
            self._wake.clear()
            hint, self._hint = self._hint, None
            reason = self._reason if woken else "registry poll"
            retry_soon = self.reconcile(reason=reason, hint=hint).action == "failed"
            if retry_soon and self._current is None and not poll:
                self._stopping.wait(5.0)  # nothing serves yet: retry the first load
                self._wake.set()

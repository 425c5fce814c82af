"""Which model serves, and replacing it without dropping a request.

`ModelManager` owns the serving `Generator`. A *reconcile* asks where the champion is
(the registry in `follow="registry"` mode, the configured directory in `"static"` mode),
and if that differs from what serves, loads it in the calling (background) thread,
verifies it, warms it up with one short generation and then swaps one reference. Work
already running keeps the generator it took (`snapshot()`), so in-flight requests finish
on the model they started with and report its version; the next batch takes the new one.
Only the current model is kept: during a swap the process holds the current and the new
model, never a third (a rollback loads again; the fast engine loads in about a second). A
failed load changes nothing: the current model keeps serving, the failure is logged,
counted (`toolrec_serving_swap_failures_total`) and shown by `/readyz` and the admin
endpoints.

Engines (`serving.engine`): `ctranslate2` loads the conversion the trainer made at
promotion (`<artifact_dir>/<version>/engine/`, `generator.fast`); a version without one
(conversion off or failed) serves on PyTorch, with a warning. `torch` always uses PyTorch.
Static mode converts `model_dir` + `adapter_dir` once into `engine_cache_dir`. The fast
engine loads `serving.workers` replicas (one per recommend worker; they share the
weights, so a model costs its weights once whatever the count).

Threads: the generators' tool linking goes through `retrieval_lock`, the lock the recommend
workers hold while they search: both use the retriever's one encoder, which is used by one
thread at a time.

What a registry row may point at (issue 16): adapter and engine directories only under the
registry's artifact directory, each with its manifest's SHA-256 recorded in the row
(`artifact_sha256`, `engine_sha256`) and every file matching the manifest; the base model
only at the configured base directory. Anything else is refused before a file is read.

Reconciles are single-flight (one lock) and are triggered by: start-up, every message on
`toolrec.models` (`serving.follower`), a periodic registry poll, and the admin endpoints.
The registry is the only source of truth: an announcement only triggers a reconcile, and
when the registry cannot be read nothing changes (the current model keeps serving and the
reason is logged) — a path in a Kafka message is never loaded. An admin rollback changes
the registry and follows it under the same lock, so the announcement it sends cannot
race it (the follower's reconcile then finds the model already serving).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from contracts.models import BASE_VERSION, manifest_sha256, verify_artifact
from generator.loading import MODEL_LOAD_LOCK
from serving.config import ServingConfig
from serving.metrics import Metrics
from toolrec.errors import AnnounceError, ServingError

if TYPE_CHECKING:
    from contracts.models import ModelRecord
    from generator.config import GeneratorConfig
    from generator.generator import Generator
    from lakehouse import ModelsTable

__all__ = [
    "LoadedModel",
    "ModelPathError",
    "ModelManager",
    "ModelTarget",
    "NothingToRollBack",
    "SwapOutcome",
]

log = logging.getLogger(__name__)


WARMUP_QUERY = "turn on battery saver"


class NothingToRollBack(ServingError):
    """A rollback was asked for but there is no model to go back to."""


class ModelPathError(ServingError):
    """A registry row points outside the artifact directory or lacks its checksum."""


@dataclass(frozen=True)
class ModelTarget:
    """What should serve: a version tag, its base model, optional LoRA adapter and serving
    engine conversion, with the checksums the registry holds for them."""

    version: str
    base_model: Path
    adapter_dir: Path | None = None
    source: Literal["registry", "static"] = "static"
    engine_dir: Path | None = None
    adapter_sha256: str | None = None
    engine_sha256: str | None = None

    def same_model(self, other: ModelTarget | None) -> bool:
        return (other is not None and other.version == self.version
                and other.adapter_dir == self.adapter_dir and other.base_model == self.base_model
                and other.engine_dir == self.engine_dir)


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
        self.retrieval_lock = threading.Lock()  # see "Threads" in the module docstring
        self.linker = (_SerializedLinker(linker, self.retrieval_lock) if linker is not None
                       else None)
        self._current: LoadedModel | None = None
        self._previous_target: ModelTarget | None = None  # static rollback reloads it
        self._lock = threading.RLock()  # re-entrant: a rollback reconciles under it
        self._wake = threading.Event()
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

    def desired(self) -> ModelTarget:
        """Where the champion is now. Raises when it cannot be determined (the registry is
        unreadable) or when the registry row points where serving must not load from."""
        if self.config.follow == "static":
            adapter = self.config.adapter_dir
            version = self.config.model_version or (adapter.name if adapter else BASE_VERSION)
            return ModelTarget(version, self._base_dir(), adapter, "static")
        assert self.registry is not None
        try:
            record = self.registry.champion()
        except Exception as exc:  # never fall back to a path from an announcement
            raise ServingError(f"cannot read the model registry {self.registry.uri}: {exc}; "
                               "the current model keeps serving") from exc
        if record is None:
            return ModelTarget(BASE_VERSION, self._base_dir(), None, "registry")
        return self._registry_target(record)

    def _registry_target(self, record: ModelRecord) -> ModelTarget:
        assert self.registry is not None
        root = self.registry.artifact_dir
        adapter = _inside(record.adapter_dir, root, f"the adapter of {record.version}")
        if not record.artifact_sha256:
            raise ModelPathError(
                f"the registry row of {record.version} has no artifact checksum (registered "
                "before checksums were recorded); `toolrec models announce` records it")
        base = Path(record.base_model).expanduser().resolve()
        if base != self._base_dir().expanduser().resolve():
            raise ModelPathError(
                f"the base model {record.base_model} of {record.version} is not the "
                f"configured base model {self._base_dir()}; serving loads only that one")
        engine = None
        if record.engine_path:
            engine = _inside(Path(record.engine_path), root, f"the engine of {record.version}")
        return ModelTarget(record.version, base, adapter, "registry", engine,
                           record.artifact_sha256, record.engine_sha256)

    # ------------------------------------------------------------------ loading
    def _verify(self, target: ModelTarget) -> None:
        """Registry targets: every directory matches the checksum its row holds."""
        if target.source != "registry" or target.adapter_dir is None:
            return
        _checked(target.adapter_dir, target.adapter_sha256, target.version)
        if target.engine_dir is not None:
            _checked(target.engine_dir, target.engine_sha256, f"{target.version} (engine)")

    def _build(self, target: ModelTarget) -> Generator:
        """The generator of `target` on the configured engine (see the module docstring)."""
        from generator.generator import Generator

        if self.config.engine == "ctranslate2":
            engine_dir = target.engine_dir
            if target.source == "static":
                engine_dir = self._static_engine(target)
            if engine_dir is not None:
                return self._fast(engine_dir, target.version)
            log.warning("model %s has no fast-engine conversion (training.engine_quantization "
                        "off, or its conversion failed at promotion): serving it on PyTorch",
                        target.version)
        elif self.config.engine != "torch":
            raise ServingError(f"serving.engine {self.config.engine!r} is not supported; use "
                               "'ctranslate2' or 'torch'")
        with MODEL_LOAD_LOCK:
            return Generator.load(target.base_model, target.adapter_dir,
                                  config=self.generator_config, linker=self.linker,
                                  model_version=target.version)

    def _fast(self, engine_dir: Path, version: str) -> Generator:
        from generator.fast import FastGenerator

        return FastGenerator.load_converted(
            engine_dir, config=self.generator_config, linker=self.linker,
            model_version=version, compute_type=self.config.engine_compute_type,
            threads=self.config.engine_threads or self.config.torch_threads,
            inter_threads=self.config.worker_count)

    def _static_engine(self, target: ModelTarget) -> Path:
        """Static mode: convert model_dir + adapter_dir once into engine_cache_dir."""
        import hashlib

        from generator.fast import convert_model, is_converted

        adapter = target.adapter_dir.resolve() if target.adapter_dir else None
        source = f"{target.base_model.resolve()}|{adapter}|{self.config.engine_compute_type}"
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        out = Path(self.config.engine_cache_dir) / f"{target.version}-{key}"
        if not is_converted(out):
            log.info("converting %s for the fast engine into %s (once)", target.version, out)
            out.parent.mkdir(parents=True, exist_ok=True)
            compute = self.config.engine_compute_type
            convert_model(target.base_model, target.adapter_dir, out,
                          quantization="float32" if compute == "float32" else "int8")
        return out

    def load(self, target: ModelTarget) -> Generator:
        """Verify `target`'s files against the registry, load them, warm the model up."""
        from generator.config import DecodingConfig
        from generator.prompt import PromptInputs

        self._verify(target)
        with MODEL_LOAD_LOCK:
            generator = self._build(target)
        if self.config.warmup_tokens:
            warm = DecodingConfig(temperature=0.0, max_new_tokens=max(4, self.config.warmup_tokens))
            generator.generate(PromptInputs(query=WARMUP_QUERY), n=1, decoding=warm)
        return generator

    def reconcile(self, *, force: bool = False, reason: str = "") -> SwapOutcome:
        """Make the champion serve (load + warm-up + swap) if it does not already."""
        with self._lock:
            before = self.version
            try:
                target = self.desired()
            except Exception as exc:
                return self._failed(before, None, exc, reason)
            if not force and self._current is not None and target.same_model(
                    self._current.target):
                return self._record(SwapOutcome("unchanged", before, before, target.version,
                                                reason=reason))
            return self._load_and_swap(target, before, reason)

    def _load_and_swap(self, target: ModelTarget, before: str | None, reason: str) -> SwapOutcome:
        log.info("loading model %s (%s, engine %s; %s) in the background", target.version,
                 target.source, self.config.engine, reason or "reconcile")
        started = time.perf_counter()
        try:
            generator = self.load(target)
        except Exception as exc:  # a broken model must never take the server down
            return self._failed(before, target.version, exc, reason)
        load_s = time.perf_counter() - started
        self.metrics.load_seconds.observe(load_s)
        loaded = LoadedModel(target, generator, load_s, time.time())
        return self._swap(loaded, before, reason)

    def _swap(self, loaded: LoadedModel, before: str | None, reason: str) -> SwapOutcome:
        old = self._current
        self._current = loaded  # the swap: one reference assignment; `old` is freed as soon
        self._previous_target = old.target if old is not None else None  # as its batches end
        self.swaps += 1
        self.last_error = None
        self.metrics.swaps.inc()
        self.metrics.set_model(loaded.version)
        log.info("now serving %s (was %s; %s, loaded in %.2f s)", loaded.version, before,
                 reason or "reconcile", loaded.load_s)
        return self._record(SwapOutcome("swapped", loaded.version, before, loaded.version,
                                        loaded.load_s, reason=reason))

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
        here, all under the reconcile lock; static mode: reload the previous model)."""
        with self._lock:
            if self.config.follow == "static":
                return self._static_rollback(to)
            assert self.registry is not None
            try:
                self.registry.rollback(to=to)
            except AnnounceError as exc:  # the registry changed; followers will poll it
                log.warning("rollback done in the registry but not announced: %s", exc)
            return self.reconcile(reason="admin rollback")

    def _static_rollback(self, to: str | None) -> SwapOutcome:
        previous = self._previous_target
        if previous is None or (to is not None and previous.version != to):
            raise NothingToRollBack(
                f"no previous model {to or ''} to roll back to (static mode remembers only "
                "the last one); reload with the wanted model_dir instead")
        return self._load_and_swap(previous, self.version, "admin rollback")

    # ------------------------------------------------------------------ background
    def request(self, reason: str) -> None:
        """Ask the background thread to reconcile soon (coalesces bursts)."""
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
        """Stop the background thread and release the model (call after the recommend
        worker stopped). Released here, not at interpreter exit: a CTranslate2 model freed
        during finalization can abort the process."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.load_timeout_s)
            self._thread = None
        self._current = None

    def _run(self) -> None:
        poll = self.config.registry_poll_s if self.config.follow == "registry" else 0.0
        while not self._stopping.is_set():
            woken = self._wake.wait(timeout=poll or None)
            if self._stopping.is_set():
                return
            self._wake.clear()
            reason = self._reason if woken else "registry poll"
            retry_soon = self.reconcile(reason=reason).action == "failed"
            if retry_soon and self._current is None and not poll:
                self._stopping.wait(5.0)  # nothing serves yet: retry the first load
                self._wake.set()


class _SerializedLinker:
    """A tool linker whose calls take `lock` (the retriever's encoder is not thread-safe)."""

    def __init__(self, linker: Any, lock: threading.Lock) -> None:
        self.linker = linker
        self.lock = lock

    def link_many(self, texts: list[str]) -> Any:
        with self.lock:
            return self.linker.link_many(texts)


def _inside(path: Path, root: Path, what: str) -> Path:
    """`path` resolved, if it lies under `root`; else ModelPathError."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ModelPathError(f"{what} is at {path}, outside the artifact directory {root}; "
                             "serving loads model files only from there")
    return resolved


def _checked(directory: Path, expected: str | None, what: str) -> None:
    """The manifest of `directory` has the registry's checksum and its files match it."""
    if not expected:
        raise ModelPathError(f"the registry holds no checksum for {what} at {directory}; "
                             "`toolrec models announce` records the champion's")
    verify_artifact(directory, version=what)  # the manifest exists and every file matches it
    actual = manifest_sha256(directory)
    if actual != expected:
        raise ModelPathError(f"the manifest of {what} at {directory} has SHA-256 {actual}, the "
                             f"registry recorded {expected}: the files were replaced; roll back "
                             "or promote the version again")

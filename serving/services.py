"""The long-lived parts of one API instance and their start / stop order.

`Services.build(settings)` only constructs (cheap, no I/O); `start()` sets torch threads,
opens the spool and starts the sender, the recommend worker (which warms retrieval), the
model manager (first load in the background) and the `toolrec.models` follower; `stop()`
reverses that, draining the spool for `drain_timeout_s`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.config import ServingConfig
from serving.engine import NotReady, RecommendEngine
from serving.follower import ModelFollower
from serving.hotswap import ModelManager
from serving.metrics import Metrics
from serving.publisher import EventPublisher
from serving.spool import Spool

if TYPE_CHECKING:
    from generator.config import GeneratorConfig
    from retrieval import Retriever
    from toolrec.config import Settings

__all__ = ["Services"]

log = logging.getLogger(__name__)


def _import_model_libraries() -> None:
    """Import the model libraries here, in one thread: the worker (retrieval's encoder) and
    the model manager (generator) start loading at the same time, and transformers' lazy
    module is not safe to initialize from two threads at once ("cannot import name
    'AutoModel'")."""
    import ctranslate2  # noqa: F401
    import peft  # noqa: F401
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: F401


@dataclass
class Services:
    """Everything a request handler needs; `app.state.services`."""

    settings: Settings
    metrics: Metrics
    retriever: Retriever
    manager: ModelManager
    engine: RecommendEngine
    follower: ModelFollower | None
    started: bool = False
    _publisher: EventPublisher | None = field(default=None, repr=False)
    _user_key: bytes | None = field(default=None, repr=False)

    @property
    def config(self) -> ServingConfig:
        return self.settings.serving

    @property
    def generator_config(self) -> GeneratorConfig:
        return self.settings.trainer.generator

    @property
    def n_default(self) -> int:
        return self.config.n_default or min(self.generator_config.n_suggestions,
                                            self.config.n_max)

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            raise NotReady("the event spool is not open yet")
        return self._publisher

    @property
    def user_key(self) -> bytes:
        if self._user_key is None:
            raise NotReady("the pseudonymization key is not loaded yet")
        return self._user_key

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, settings: Settings, *, retriever: Any = None,
              metrics: Metrics | None = None) -> Services:
        """Construct (no I/O). Pass `retriever` to share a loaded one (tests, benchmarks)."""
        from retrieval import Retriever

        config: ServingConfig = settings.serving
        metrics = metrics or Metrics()
        retriever = retriever or Retriever(settings.retrieval)
        registry = None
        if config.follow == "registry":
            from lakehouse import ModelsTable

            training = settings.trainer.training
            registry = ModelsTable(settings.lake, training.registry_table, training.artifact_dir,
                                   settings.kafka if training.announce else None)
        generator_config = settings.trainer.generator
        manager = ModelManager(config, generator_config, metrics=metrics, registry=registry,
                               linker=retriever)
        engine = RecommendEngine(config, generator_config, manager=manager,
                                 retriever=retriever, metrics=metrics)
        follower = None
        if config.follow == "registry" and config.follow_announcements:
            follower = ModelFollower(settings.kafka, manager)
        return cls(settings, metrics, retriever, manager, engine, follower)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        from contracts.events import load_user_id_key

        if self.started:
            return
        _import_model_libraries()
        if self.config.torch_threads:
            import torch

            torch.set_num_threads(self.config.torch_threads)
        self._user_key = load_user_id_key(self.settings.streams.telemetry,
                                          self.settings.infra.state_dir)
        spool = Spool(self.config.spool_dir, segment_bytes=self.config.spool_segment_bytes,
                      fsync=self.config.spool_fsync)
        if spool.depth:
            log.info("spool: %d events from an earlier run will be sent first", spool.depth)
        self._publisher = EventPublisher(self.settings.kafka, spool, self.config, self.metrics)
        self._publisher.start()
        self.engine.start()
        self.manager.start()
        if self.follower is not None:
            self.follower.start()
        self.started = True

    def stop(self) -> None:
        """Stop accepting work, finish the running batch, drain the spool (bounded)."""
        if not self.started:
            return
        if self.follower is not None:
            self.follower.stop()
        self.engine.stop()
        self.manager.stop()
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher.spool.close()
        self.started = False

    def readiness(self) -> dict[str, Any]:
        """What /readyz reports."""
        publisher = self._publisher
        ready = (self.manager.current is not None and self.engine.retrieval_ready.is_set()
                 and publisher is not None)
        return {
            "ready": ready,
            "model_version": self.manager.version,
            "retrieval_ready": self.engine.retrieval_ready.is_set(),
            "queue_depth": self.engine.pending,
            "spool_depth": publisher.spool.depth if publisher else 0,
            "broker_connected": publisher.connected if publisher else False,
            "swaps": self.manager.swaps,
            "last_error": self.manager.last_error or self.engine.retrieval_error,
        }

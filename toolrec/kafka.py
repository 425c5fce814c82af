"""Kafka client settings shared by every stage: where the cluster is, how to authenticate,
which topics exist, and the client keyword arguments derived from them.

Nothing here assumes tansu: `flavor="tansu"` only switches on the compatibility layer for
tansu's wrong end offsets (see `infra.compat`). SASL / TLS settings pass straight through
to kafka-python, aiokafka and Faust.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# How long a consumer's fetch waits when the broker has nothing new. Kafka answers such a
# fetch as soon as records arrive; tansu does not, it answers when the wait runs out: a
# record produced every 20 ms reached an aiokafka consumer p50 371 / max 748 ms after it
# was produced with Faust's 1,500 ms wait, 26 / 54 ms with 100 ms (issue 12: click ->
# Delta). An idle consumer then asks 10 times a second, a few hundred bytes each time.
TANSU_FETCH_MAX_WAIT_MS = 100
AIOKAFKA_FETCH_MAX_WAIT_MS = 500  # aiokafka's default


class Topics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    impressions: str = "toolrec.impressions"
    feedback: str = "toolrec.feedback"
    samples: str = "toolrec.samples"
    dlq: str = "toolrec.dlq"
    models: str = "toolrec.models"

    def all(self) -> list[str]:
        return [self.impressions, self.feedback, self.samples, self.dlq, self.models]


class KafkaConfig(BaseModel):
    """How to reach the cluster. Defaults: the local broker of `toolrec infra broker up`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(
        "127.0.0.1:19092", description="Comma-separated host:port list of the cluster."
    )
    flavor: Literal["kafka", "tansu"] = Field(
        "tansu",
        description="'tansu' enables the end-offset compatibility layer (DESIGN.md §5a); "
        "use 'kafka' for Apache Kafka, Redpanda, MSK, Confluent Cloud.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of topics we create.")
    replication_factor: int = Field(1, ge=1, le=7)
    topics: Topics = Topics()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile or "") or None)
        return context

    def _sasl(self) -> dict[str, Any]:
        if self.sasl_mechanism is None:
            return {}
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password.get_secret_value()
            if self.sasl_password
            else None,
        }

    def fetch_max_wait_ms(self) -> int:
        """A consumer's fetch wait for this broker (see `TANSU_FETCH_MAX_WAIT_MS`)."""
        return TANSU_FETCH_MAX_WAIT_MS if self.flavor == "tansu" else AIOKAFKA_FETCH_MAX_WAIT_MS

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments accepted by both kafka-python and aiokafka."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            **self._sasl(),
        }
        context = self._ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        return kwargs

    def faust_broker_url(self) -> str:
        """Faust broker URL; the scheme selects a transport of `streams.transport`."""
        scheme = "toolrec-tansu" if self.flavor == "tansu" else "toolrec"
        return ";".join(f"{scheme}://{server}" for server in self.bootstrap_servers.split(","))

    def faust_credentials(self) -> Any:
        """Faust credentials object for SASL / TLS, or None for PLAINTEXT."""
        import faust

        context = self._ssl_context()
        if self.sasl_mechanism is not None:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None,
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None

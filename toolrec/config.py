"""The one typed configuration of toolrec.

Every stage owns a frozen section model in its own `config.py`; `Settings` composes them.
Values come, lowest precedence first, from the embedded defaults, a TOML file
(`--config FILE` or `TOOLREC_CONFIG`), then environment variables
`TOOLREC_<SECTION>__<FIELD>` (e.g. `TOOLREC_KAFKA__BOOTSTRAP_SERVERS=broker:9092`).
Secrets (`SecretStr` fields) never print: `toolrec config show` masks them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contracts.config import PrivacyConfig
from infra.config import InfraConfig
from lakehouse.config import LakeConfig
from loop.config import LoopConfig
from retrieval.config import RetrievalConfig
from serving.config import ServingConfig
from streams.config import StreamsConfig
from toolrec.errors import ConfigError
from toolrec.kafka import KafkaConfig
from trainer.config import TrainerConfig

CONFIG_ENV = "TOOLREC_CONFIG"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOOLREC_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaConfig = KafkaConfig()
    infra: InfraConfig = InfraConfig()
    streams: StreamsConfig = StreamsConfig()
    lake: LakeConfig = LakeConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    trainer: TrainerConfig = TrainerConfig()
    serving: ServingConfig = ServingConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    loop: LoopConfig = LoopConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get(CONFIG_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, an optional TOML file, the environment and overrides.

    Raises ConfigError naming the field, the allowed range and the value received.
    """
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
        os.environ[CONFIG_ENV] = str(path)
    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration: {problems}; fix these fields in the TOML file or the "
            "TOOLREC_<SECTION>__<FIELD> variables (`toolrec config show` prints the values)"
        ) from exc

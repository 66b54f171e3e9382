"""A real S3-compatible server for the export storage tests: moto's standalone server on 127.0.0.1.

One server per test process (started at the first test that needs it, stopped at the end of the
session); each test gets a bucket of its own in it (``bucket``), so tests never see each other's files.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from config.storages import object_storage
from tests.processes import free_port, process_stop, wait_for

# moto accepts any credentials; they are passed explicitly so that nothing of the machine's AWS
# configuration (~/.aws, AWS_* of the shell) is used.
ACCESS_KEY = "apm-test-access"
SECRET_KEY = "apm-test-secret"
REGION = "us-east-1"
PREFIX = "exports-prefix"


class S3Server:
    """``python -m moto.server`` on a free port of 127.0.0.1, in a process of its own."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, timeout=60, what=f"moto's S3 server on port {self.port} (log: {self.log})")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"moto's S3 server exited with {self.process.returncode}: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            process_stop(self.process)
            self.process = None

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


_buckets = itertools.count(1)


@dataclass
class Bucket:
    """A bucket of the test's own on ``server``, and how APM is pointed at it."""

    server: S3Server
    name: str

    def storage(self, endpoint_url: str = "", **client: int) -> dict[str, Any]:
        """The ``STORAGES["default"]`` of this bucket, as config.settings.base builds it (``client``:
        ``read_timeout`` and ``attempts``, as gunicorn.conf.py sets them for a web process)."""
        return object_storage(
            **client,
            bucket=self.name,
            endpoint_url=endpoint_url or self.server.url,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            location=PREFIX,
        )

    def env(self, endpoint_url: str = "") -> dict[str, str]:
        """The same, as the environment of a process on config.settings (a worker)."""
        return {
            "AWS_STORAGE_BUCKET_NAME": self.name,
            "AWS_S3_ENDPOINT_URL": endpoint_url or self.server.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_LOCATION": PREFIX,
        }

    def keys(self) -> list[str]:
        listing = self.server.client().list_objects_v2(Bucket=self.name)
        return sorted(entry["Key"] for entry in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read())


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    name = f"apm-test-{os.getpid()}-{next(_buckets)}"
    s3_server.client().create_bucket(Bucket=name)
    return Bucket(server=s3_server, name=name)

"""Run the real `computegrid up` as a subprocess, on SQLite or PostgreSQL, and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computegrid.client import Client
from tests.conftest import fresh_database_url

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class UpProcess:
    """`computegrid up` in its own process group, with its own state dir and config home."""

    def __init__(self, tmp: Path, database_url: str | None, extra_args: list[str] | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.state_dir = tmp / "state"
        self.env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "config"), COMPUTEGRID_LOG_LEVEL="INFO")
        if database_url is not None:
            self.env["COMPUTEGRID_DATABASE_URL"] = database_url
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = open(self.tmp / f"up-{self.starts}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "computegrid", "up", "--port", str(self.port), "--state-dir", str(self.state_dir),
             "--poll-interval", "0.2", *self.extra_args],
            cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"up exited early:\n{self.log_text()}")
            try:  # up writes the credentials just after the API answers: wait for both
                credentials = self.tmp / "config" / "computegrid" / "credentials.json"
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 and credentials.exists():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"up did not answer within 60 s:\n{self.log_text()}")

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("up-*.log")))

    def api_key(self) -> str:
        data = json.loads((self.tmp / "config" / "computegrid" / "credentials.json").read_text())
        key: str = data["api_key"]
        return key

    def client(self) -> Client:
        return Client(self.url, self.api_key())

    def kill(self) -> None:
        """SIGKILL: no clean-up runs at all (job runners, in their own sessions, survive)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return -9

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        # Stop any job runner this test left behind (they carry the state dir in their command line).
        subprocess.run(["pkill", "-9", "-f", str(self.state_dir)], check=False)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "computegrid", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def up_factory(db_kind: str, tmp_path: Path) -> Iterator[object]:
    made: list[UpProcess] = []

    def make(extra_args: list[str] | None = None) -> UpProcess:
        url = None if db_kind == "sqlite" else fresh_database_url(db_kind, tmp_path)
        up = UpProcess(tmp_path, url, extra_args)
        made.append(up)
        return up

    yield make
    for up in made:
        up.cleanup()

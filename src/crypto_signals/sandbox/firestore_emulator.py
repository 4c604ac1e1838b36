"""Start and stop the real Google Cloud Firestore emulator on a free loopback port.

Used by the test suite (one emulator per session), the demo and the benchmarks. When the
emulator is not installed this fails with instructions, never silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

import requests

INSTALL_HINT = (
    "The Firestore emulator is required (it needs Java 11+). Install it with one of:\n"
    "  apt-get install google-cloud-cli google-cloud-cli-firestore-emulator default-jre-headless\n"
    "  gcloud components install cloud-firestore-emulator\n"
    "then check that `gcloud emulators firestore start --help` works."
)


class EmulatorNotInstalled(RuntimeError):
    pass


class EmulatorFailedToStart(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FirestoreEmulator:
    def __init__(
        self, *, project: str = "demo-crypto-signals", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.project = project
        self.host = host
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the emulator
            prefix="firestore-emulator-", suffix=".log", delete=False
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def start(self, timeout: float = 90.0) -> FirestoreEmulator:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise EmulatorNotInstalled("gcloud is not on PATH.\n" + INSTALL_HINT)
        if shutil.which("java") is None:
            raise EmulatorNotInstalled("java is not on PATH.\n" + INSTALL_HINT)
        env = dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1")
        self._proc = subprocess.Popen(
            [gcloud, "emulators", "firestore", "start", f"--host-port={self.address}", "--quiet"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # so stop() can end gcloud and its java child together
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._failure("exited early")
            try:
                if requests.get(self._url("/"), timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise self._failure(f"not ready after {timeout:.0f}s")

    def _failure(self, what: str) -> Exception:
        with open(self._log.name, encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-2000:]
        if "not installed" in tail or ("component" in tail.lower() and "install" in tail.lower()):
            return EmulatorNotInstalled(f"Firestore emulator {what}:\n{tail}\n{INSTALL_HINT}")
        return EmulatorFailedToStart(f"Firestore emulator {what}; its log:\n{tail}")

    def clear(self) -> None:
        url = self._url(f"/emulator/v1/projects/{self.project}/databases/(default)/documents")
        response = requests.delete(url, timeout=10)
        response.raise_for_status()

    def client(self) -> Any:
        """A Firestore client on this emulator (points the whole process at it)."""
        from google.cloud import firestore

        os.environ["FIRESTORE_EMULATOR_HOST"] = self.address
        return firestore.Client(project=self.project)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> FirestoreEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

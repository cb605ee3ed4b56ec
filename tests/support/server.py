"""Starts a real `majlis serve` process on 127.0.0.1 and stops it (only it) afterwards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
_ADMIN = re.compile(r"Admin token: (\S+)")


@dataclass
class RunningServer:
    base: str
    admin_token: str
    data: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def create_space(self, title: str = "Test space", **fields: str) -> dict[str, Any]:
        """`fields`: the other fields of POST /api/spaces (description, language, …)."""
        req = urllib.request.Request(
            self.base + "/api/spaces",
            data=json.dumps({"title": title, **fields}).encode(),
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def log(self) -> str:
        return "".join(self.output)


@contextmanager
def majlis_server(
    data: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 20.0
) -> Iterator[RunningServer]:
    cmd = [
        sys.executable, "-m", "majlis.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--data", str(data), "--ice-address", "127.0.0.1", *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    output: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if m := _LISTENING.search(line):
                found["base"] = m.group(1)
            if m := _ADMIN.search(line):
                found["admin"] = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start in time:\n" + "".join(output))
    if "admin" not in found:
        proc.wait(5)
        raise AssertionError("server exited at start:\n" + "".join(output))
    server = RunningServer(found["base"], found["admin"], data, proc, output)
    try:
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], grace: float = 15.0) -> int:
    """SIGTERM (a clean shutdown for majlis and nginx alike), then SIGKILL after `grace`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode

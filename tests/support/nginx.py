"""Runs a real nginx edge (config from `majlis edge-config`) on 127.0.0.1 and stops it (only it).

nginx runs unprivileged in the foreground (`-g 'daemon off;'`) from its own prefix folder;
when the tests run as root it runs as `nobody`, so the generated config is proved to need no
privilege at all.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import stop

_UNPRIVILEGED = "nobody"


def nginx_binary() -> str:
    # Debian installs it in /usr/sbin, which is not on an unprivileged user's PATH.
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        raise AssertionError("nginx is not installed: run `bash scripts/system-deps.sh test`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def edge_config(origin: str, *args: str) -> str:
    """The config text, produced by the real command line."""
    cmd = [sys.executable, "-m", "majlis.cli", "edge-config", "--origin", origin, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"edge-config failed ({done.returncode}): {done.stderr}"
    return done.stdout


def _drop_privileges() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(_UNPRIVILEGED)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def make_prefix() -> Path:
    """A prefix folder nginx may write to, outside pytest's root-only tmp folders."""
    prefix = Path(tempfile.mkdtemp(prefix="majlis-edge-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_UNPRIVILEGED)
        os.chown(prefix, entry.pw_uid, entry.pw_gid)
    return prefix


def check_config(prefix: Path, config: str) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on ``config`` written to ``prefix``/nginx.conf."""
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    cmd = [nginx_binary(), "-t", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, check=False, **_drop_privileges()
    )


@dataclass
class RunningNginx:
    base: str
    prefix: Path
    process: subprocess.Popen[bytes]
    # The access log, read once nginx has stopped (it buffers lines until then).
    access_log: str = ""

    def pids(self) -> list[int]:
        """The master and its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            workers = [int(p) for p in children.read_text().split()]
        except OSError:
            workers = []
        return [self.process.pid, *workers]

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and the workers alive now."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "not tried"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited at start with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port} within {timeout} s: {last}")


@contextmanager
def nginx_edge(
    origin: str, *args: str, timeout: float = 10.0, port: int | None = None
) -> Iterator[RunningNginx]:
    """An edge for ``origin`` (extra ``args`` go to `majlis edge-config`), on ``port`` when
    the test had to name it before the edge existed (the origin's --pathway flags)."""
    port = port or free_port()
    prefix = make_prefix()
    config = edge_config(origin, "--listen", f"127.0.0.1:{port}", *args)
    checked = check_config(prefix, config)
    if checked.returncode != 0:
        shutil.rmtree(prefix, ignore_errors=True)
        raise AssertionError(f"nginx -t refused the config:\n{checked.stderr}")
    cmd = [nginx_binary(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    proc = subprocess.Popen(
        [*cmd, "-g", "daemon off;"], stdin=subprocess.DEVNULL, **_drop_privileges()
    )
    running = RunningNginx(f"http://127.0.0.1:{port}", prefix, proc)
    try:
        _wait_listening(proc, port, timeout)
        yield running
    finally:
        stop(proc)
        log = prefix / "access.log"
        if log.exists():
            running.access_log = log.read_text(errors="replace")
        shutil.rmtree(prefix, ignore_errors=True)

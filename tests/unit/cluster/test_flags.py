from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from majlis.cli import main
from majlis.config import parse_node_url, parse_redis_url
from tests.support.redis import free_port


def test_redis_and_node_urls() -> None:
    assert parse_redis_url("redis://10.0.0.9:6379/0") == "redis://10.0.0.9:6379/0"
    assert parse_redis_url("rediss://u:p@r.example:6380/1").startswith("rediss://")
    assert parse_node_url("http://10.0.0.5:8080/") == "http://10.0.0.5:8080"
    with pytest.raises(ValueError, match="redis://host:6379/0"):
        parse_redis_url("10.0.0.9:6379")
    with pytest.raises(ValueError, match="scheme, host and port only"):
        parse_node_url("http://10.0.0.5:8080/api")
    with pytest.raises(ValueError, match="scheme, host and port only"):
        parse_node_url("10.0.0.5:8080")


def test_a_wildcard_listener_must_say_how_other_nodes_reach_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["serve", "--host", "0.0.0.0", "--data", str(tmp_path), "--redis", "redis://r:6379/0"]
    assert main(args) == 2
    assert "--node-url" in capsys.readouterr().err


def test_a_node_without_its_redis_says_so_and_exits(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "majlis.cli", "serve", "--port", "0", "--data", str(tmp_path),
        "--redis", f"redis://127.0.0.1:{free_port()}/0",
    ]  # fmt: skip
    env = {**os.environ, "MAJLIS_REDIS_WAIT_S": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1
    assert "shared store (Redis) is unreachable" in done.stderr
    assert "Traceback" not in done.stderr

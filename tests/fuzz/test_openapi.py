"""schemathesis against the served OpenAPI document, on a running server.

Every operation, with the admin, host and speaker tokens and a real ended space for the path
parameters, must pass "not a server error", "status code conformance" and "response schema
conformance". The document is made true, never the checks loose. schemathesis runs as its own
process (its pytest plugin and `-W error` do not mix) and its JUnit report is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.client import request
from tests.fuzz.live import ROOT, generous_limits, start_speaker, wait_for_parts
from tests.fuzz.strategies import RANDOM, SCALE
from tests.support.server import RunningServer, majlis_server, stop

CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance")
# Per operation and phase; with the coverage phase this is ~1,000 requests in all.
MAX_EXAMPLES = 10
SCHEMA_URL = "/static/openapi.json"


@dataclass
class Target:
    server: RunningServer
    replay: dict[str, Any]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server of its own: schemathesis may end spaces and switch attack mode on."""
    data = tmp_path_factory.mktemp("openapi") / "data"
    with majlis_server(data, *generous_limits()) as server:
        space = server.create_space("Replay for schemathesis")
        speaker = start_speaker(server, space)
        try:
            wait_for_parts(server, space["id"], segments=2)
        finally:
            stop(speaker, grace=5)
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        ended = request(server.base, "POST", f"/api/spaces/{space['id']}/end", headers=admin)
        assert ended.status == 200, (ended.status, ended.body)
        yield Target(server, space)


def _config(target: Target) -> str:
    replay = target.replay
    checks = "\n".join(f"{name}.enabled = true" for name in CHECKS)
    return f"""
hooks = "tests.fuzz.schemathesis_hooks"

[auth.openapi.admin]
bearer = {json.dumps(target.server.admin_token)}
[auth.openapi.host]
bearer = {json.dumps(replay["host_token"])}
[auth.openapi.speaker]
bearer = {json.dumps(replay["speaker_token"])}

[parameters]
"path.space_id" = {json.dumps(replay["id"])}
"path.clip_id" = {json.dumps(replay["id"] + ".0-1")}

[generation]
max-examples = {MAX_EXAMPLES * SCALE}
deterministic = {"false" if RANDOM else "true"}
database = "none"

[checks]
enabled = false
{checks}
"""


def _failures(report: Path) -> list[str]:
    found = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            found.append(f"{case.get('name')}: {text.strip()[:2000]}")
    return found


def test_schemathesis_finds_nothing(target: Target, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(target))
    report = tmp_path / "junit.xml"
    base = target.server.base
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", base + SCHEMA_URL, "--url", base, "--workers", "1",
        "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Run from the test folder: schemathesis leaves a .schemathesis/ cache where it runs.
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout[-6000:] + done.stderr[-2000:]
    assert report.exists(), output
    failures = _failures(report)
    assert not failures, "\n\n".join(failures) + "\n\n" + output
    assert done.returncode == 0, output
    assert "Tested: " in done.stdout, output
    log = target.server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-4000:]

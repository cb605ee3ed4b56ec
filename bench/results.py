"""Shared results file: each benchmark writes its own section, the others are kept."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def update(section: str, data: dict[str, Any]) -> None:
    current: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    current[section] = {
        **data,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
    }
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    return data


def _cpus() -> int:
    import os

    return os.cpu_count() or 0

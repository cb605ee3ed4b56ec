from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the page tests put their screenshots: $MAJLIS_SCREENSHOTS (docs/screenshots to
    refresh the docs), else the test's own folder."""
    folder = Path(os.environ.get("MAJLIS_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

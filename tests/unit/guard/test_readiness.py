from __future__ import annotations

import os
from pathlib import Path

import pytest

from majlis.guard import readiness
from majlis.guard.readiness import TickWatch, data_folder_problem, reasons


def test_ready_when_nothing_is_wrong(tmp_path: Path) -> None:
    problem = data_folder_problem(tmp_path)
    assert problem is None
    assert reasons(stopping=False, listeners_full=False, data_problem=None, lagging=[]) == []


def test_every_reason_is_named() -> None:
    found = reasons(
        stopping=True, listeners_full=True, data_problem="data folder is not writable",
        lagging=["abc"],
    )  # fmt: skip
    assert found == [
        "shutting down",
        "listener connections are at their limit",
        "data folder is not writable",
        "space abc: the media pipeline is lagging",
    ]


def test_a_missing_data_folder_is_a_problem(tmp_path: Path) -> None:
    assert (data_folder_problem(tmp_path / "gone") or "").startswith("data folder unreadable")


def test_a_read_only_data_folder_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores permission bits, so the answer of access(2) is what is replaced here.
    monkeypatch.setattr(readiness.os, "access", lambda path, mode: mode != os.W_OK)
    assert data_folder_problem(tmp_path) == "data folder is not writable"


def test_a_pipeline_that_stopped_ticking_is_stalled() -> None:
    watch = TickWatch()
    assert not watch.stalled("s", 10, 0.0)
    assert not watch.stalled("s", 10, 0.9)
    assert watch.stalled("s", 10, 1.1)
    assert not watch.stalled("s", 11, 1.2), "it ticked again"
    watch.keep_only(set())
    assert not watch.stalled("s", 11, 9.0), "forgotten: seen afresh"

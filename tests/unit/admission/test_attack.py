"""Attack mode: who switches it on, and the automatic switch by request rate."""

from __future__ import annotations

from majlis.admission.attack import AttackMode

NOW = 1_800_000_000.0


def test_off_by_default_and_set_by_admin_or_host() -> None:
    mode = AttackMode(16, threshold_per_s=0, quiet_s=60)
    assert mode.status("s1", NOW).difficulty is None
    mode.set_space("s1", 12)
    assert mode.status("s1", NOW).difficulty == 12
    assert mode.status("s2", NOW).difficulty is None
    mode.set_node(18)
    assert mode.status("s2", NOW).difficulty == 18
    assert mode.status("s1", NOW).to_json()["node"] == 18
    mode.set_node(None)
    mode.set_space("s1", None)
    assert mode.status("s1", NOW).difficulty is None
    assert AttackMode(16, 0, 60, on=True).status(None, NOW).difficulty == 16


def test_a_second_over_the_threshold_switches_it_on_until_a_quiet_period_passed() -> None:
    mode = AttackMode(16, threshold_per_s=5, quiet_s=60)
    for i in range(5):
        mode.note_request(NOW + i * 0.1)
    assert mode.status(None, NOW + 0.5).difficulty is None
    mode.note_request(NOW + 0.6)
    status = mode.status(None, NOW + 0.6)
    assert status.difficulty == 16 and status.auto_until == NOW + 60.6
    # Requests at a normal rate do not keep it on; once the quiet period ends it is off.
    for i in range(60):
        mode.note_request(NOW + 1 + i)
    assert mode.status(None, NOW + 60.5).difficulty == 16
    assert mode.status(None, NOW + 60.7).difficulty is None


def test_threshold_zero_never_switches_itself_on() -> None:
    mode = AttackMode(16, threshold_per_s=0, quiet_s=60)
    for _ in range(10_000):
        mode.note_request(NOW)
    assert mode.status(None, NOW).difficulty is None

"""The waiting room: order, tickets that cannot be forged, places kept and given up."""

from __future__ import annotations

import pytest

from majlis.admission.capacity import (
    IDLE_SLACK_S,
    Admitted,
    AdmittedCount,
    TicketRefused,
    Waiting,
    WaitingRoom,
    poll_interval,
)

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def _wait(decision: Admitted | Waiting) -> Waiting:
    assert isinstance(decision, Waiting), decision
    return decision


def _line(room: WaitingRoom, admitted: int, clients: list[str], now: float) -> list[Waiting]:
    return [_wait(room.decide(admitted, None, c, now)) for c in clients]


def test_under_capacity_everyone_is_admitted_and_unlimited_means_unlimited() -> None:
    room = WaitingRoom(SECRET, capacity=3)
    assert room.decide(2, None, "a", NOW) == Admitted(ticketed=False)
    assert isinstance(room.decide(3, None, "a", NOW), Waiting)
    assert WaitingRoom(SECRET, capacity=0).decide(10**9, None, "a", NOW) == Admitted(False)


def test_full_node_gives_places_in_arrival_order_with_retry_after() -> None:
    room = WaitingRoom(SECRET, capacity=2)
    waits = _line(room, 2, ["a", "b", "c"], NOW)
    assert [w.position for w in waits] == [1, 2, 3]
    assert [w.retry_after for w in waits] == [1, 1, 1]
    assert waits[0].to_json()["waiting"] is True
    assert len(room) == 3


def test_capacity_frees_in_order() -> None:
    room = WaitingRoom(SECRET, capacity=2)
    a, b, c = _line(room, 2, ["a", "b", "c"], NOW)
    # Still full: the head of the line keeps waiting.
    assert _wait(room.decide(2, a.ticket, "a", NOW + 1)).position == 1
    # One listener leaves: only the first in line gets in, even if the third asks first.
    assert _wait(room.decide(1, c.ticket, "c", NOW + 2)).position == 3
    assert _wait(room.decide(1, b.ticket, "b", NOW + 2)).position == 2
    assert room.decide(1, a.ticket, "a", NOW + 2) == Admitted(ticketed=True)
    assert _wait(room.decide(2, b.ticket, "b", NOW + 3)).position == 1
    assert _wait(room.decide(2, c.ticket, "c", NOW + 3)).position == 2
    # A newcomer without a ticket goes behind them, even once there is room for one.
    assert _wait(room.decide(1, None, "d", NOW + 3)).position == 3
    assert room.decide(1, b.ticket, "b", NOW + 4) == Admitted(ticketed=True)
    # Two places free at once: the next two in line both fit.
    assert room.decide(0, c.ticket, "c", NOW + 4) == Admitted(ticketed=True)


def test_a_ticket_admits_once() -> None:
    room = WaitingRoom(SECRET, capacity=1)
    (a,) = _line(room, 1, ["a"], NOW)
    assert room.decide(0, a.ticket, "a", NOW + 1) == Admitted(ticketed=True)
    with pytest.raises(TicketRefused, match="already used"):
        room.decide(0, a.ticket, "a", NOW + 2)


def test_forged_moved_or_expired_tickets_are_refused() -> None:
    room = WaitingRoom(SECRET, capacity=1)
    a, b = _line(room, 1, ["a", "b"], NOW)
    number, expires, mac = b.ticket.split(".")
    earlier = f"{int(number) - 1}.{expires}.{mac}"
    longer = f"{number}.{int(expires) + 99_999}.{mac}"
    other_server = _wait(WaitingRoom(b"t" * 32, 1).decide(1, None, "b", NOW)).ticket
    for forged in (earlier, longer, other_server):
        with pytest.raises(TicketRefused, match="not issued to this address by this server"):
            room.decide(0, forged, "b", NOW + 1)
    with pytest.raises(TicketRefused, match="not issued to this address"):
        room.decide(0, b.ticket, "a", NOW + 1)
    for junk in ("", "1.2", "a.b.c.d", "x" * 40):
        with pytest.raises(TicketRefused, match="malformed"):
            room.decide(0, junk, "b", NOW + 1)
    with pytest.raises(TicketRefused, match="expired"):
        room.decide(0, a.ticket, "a", float(a.ticket.split(".")[1]))


def test_an_absent_ticket_gives_its_place_up_and_takes_it_back_when_shown() -> None:
    room = WaitingRoom(SECRET, capacity=1)
    a, b = _line(room, 1, ["a", "b"], NOW)
    gone = NOW + 2 * a.retry_after + IDLE_SLACK_S + 1
    # Only b keeps asking: a leaves the line, b moves up.
    assert _wait(room.decide(1, b.ticket, "b", NOW + 5)).position == 2
    assert _wait(room.decide(1, b.ticket, "b", gone)).position == 1
    assert len(room) == 1
    # a comes back (a restarted node would see the same): its number puts it first again.
    assert _wait(room.decide(1, a.ticket, "a", gone + 1)).position == 1
    assert _wait(room.decide(1, b.ticket, "b", gone + 1)).position == 2


def test_polls_are_spaced_with_the_position() -> None:
    assert poll_interval(1) == 1
    assert poll_interval(100) == 6
    assert poll_interval(10**6) == 30


def test_estimate_follows_the_pace_of_admissions() -> None:
    room = WaitingRoom(SECRET, capacity=1)
    waits = _line(room, 1, [f"c{i}" for i in range(10)], NOW)
    assert waits[-1].estimate_s is None
    for i in range(4):  # one admitted every 2 s
        assert room.decide(0, waits[i].ticket, f"c{i}", NOW + 2 * i) == Admitted(True)
    last = _wait(room.decide(1, waits[9].ticket, "c9", NOW + 7))
    assert last.position == 6
    assert last.estimate_s == 12


def test_admitted_count_is_recounted_at_most_every_second() -> None:
    calls: list[float] = []

    def recount(now: float) -> int:
        calls.append(now)
        return 5

    count = AdmittedCount(recount)
    assert count.value(NOW) == 5
    count.add()
    assert count.value(NOW + 0.5) == 6
    assert count.value(NOW + 1.0) == 5
    assert calls == [NOW, NOW + 1.0]

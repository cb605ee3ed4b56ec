from __future__ import annotations

from majlis.guard.ratelimit import Rate
from majlis.guard.shared import SharedBudget


def test_an_address_past_the_cluster_budget_waits_for_the_next_window() -> None:
    budget = SharedBudget(Rate(per_s=2, burst=5), window_s=10)
    assert budget.budget == 25
    for _ in range(3):
        budget.note("a")
    window, counts = budget.drain(wall=105.0)
    assert window == 10 and counts == [("a", 3)]
    assert budget.drain(106.0)[1] == [], "counts are sent once"
    # The other nodes' requests bring the sum past the budget.
    budget.apply(window, [("a", 26), ("b", 25)])
    assert budget.blocked("a", 106.0) == 4
    assert budget.blocked("b", 106.0) == 0, "at the budget is still allowed"
    assert budget.blocked("a", 110.0) == 0, "a new window starts afresh"

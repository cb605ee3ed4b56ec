"""Every limit of one server, built from its settings, and the count of what each refused."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from majlis.config import Settings
from majlis.errors import MajlisError
from majlis.guard.clients import Network, parse_networks
from majlis.guard.connections import ConnectionLimiter
from majlis.guard.holds import HoldLimiter
from majlis.guard.ratelimit import Rate, RateLimiter
from majlis.guard.shared import SharedBudget
from majlis.guard.timeouts import Timeouts


class UriTooLong(MajlisError):
    status = 414
    code = "uri_too_long"


@dataclass(frozen=True, slots=True)
class Sizes:
    max_url_bytes: int = 4096
    max_query_bytes: int = 1024
    max_header_bytes: int = 8190
    max_headers: int = 64


@dataclass(slots=True)
class Limits:
    trusted: tuple[Network, ...]
    exempt: tuple[Network, ...]
    listener_rate: RateLimiter
    api_rate: RateLimiter
    holds: HoldLimiter
    connections: ConnectionLimiter
    timeouts: Timeouts
    sizes: Sizes
    # Refusals by reason, for /metrics.
    refusals: Counter[str] = field(default_factory=Counter)
    # Set when the server begins to shut down: /readyz then answers 503.
    stopping: bool = False
    # Budgets per lane shared by every node of a cluster (None on a lone node).
    shared: dict[str, SharedBudget] | None = None

    def share(self, s: Settings) -> None:
        self.shared = {
            "listener": SharedBudget(Rate(*s.listener_rate)),
            "api": SharedBudget(Rate(*s.api_rate)),
        }

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            trusted=parse_networks(s.trusted_proxies),
            exempt=parse_networks(s.limit_exempt),
            listener_rate=RateLimiter(Rate(*s.listener_rate), Rate(*s.listener_prefix_rate)),
            api_rate=RateLimiter(Rate(*s.api_rate), Rate(*s.api_prefix_rate)),
            holds=HoldLimiter(
                s.max_held_per_address, s.max_held, per_network=s.max_held_per_network
            ),
            connections=ConnectionLimiter(
                s.max_connections, s.max_connections_per_address, s.speaker_connections
            ),
            # A body gets the grace a head gets before its rate is judged.
            timeouts=Timeouts(
                head_s=s.header_timeout,
                idle_s=s.idle_timeout,
                min_body_rate=s.min_body_rate,
                body_grace_s=s.header_timeout,
            ),
            sizes=Sizes(
                max_url_bytes=s.max_url_bytes,
                max_query_bytes=s.max_query_bytes,
                max_header_bytes=s.max_header_bytes,
                max_headers=s.max_headers,
            ),
        )

    def refuse(self, reason: str) -> None:
        self.refusals[reason] += 1

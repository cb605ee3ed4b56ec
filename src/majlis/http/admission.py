"""The gate in front of new listener sessions, and the routes that switch attack mode.

Only `POST /live/{id}/sessions` passes the gate; playlists, parts and segments never do, so
they stay identical and cacheable for everyone (docs/security.md says what that leaves
open). Waiting is not an error: it answers 202 with a ticket and `Retry-After`. Attack
mode answers 401 with a challenge in the usual error body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from majlis.admission.attack import AttackMode, Status
from majlis.admission.capacity import (
    MAX_POLL_S,
    AdmittedCount,
    LineFull,
    TicketRefused,
    Waiting,
    WaitingRoom,
)
from majlis.admission.pow import MAX_DIFFICULTY, MIN_DIFFICULTY, Challenge, PowRefused, ProofOfWork
from majlis.admission.seal import load_secret
from majlis.app import App
from majlis.errors import BadRequest, Forbidden, Unavailable
from majlis.guard.middleware import client_of
from majlis.http.auth import is_admin, require_admin, space_claims
from majlis.http.body import read_json_object
from majlis.rooms.space import Space
from majlis.rooms.tokens import Role

routes = web.RouteTableDef()

NO_STORE = {"Cache-Control": "no-store"}
SECRET_FILE = "admission_secret"
POW_SCHEME = 'Majlis-PoW algorithm="sha256-leading-zero-bits"'


class Admission:
    """The node's waiting room, proof-of-work checker and attack-mode switch."""

    def __init__(self, app: App) -> None:
        settings = app.settings
        secret = load_secret(app.data / SECRET_FILE)
        self.app = app
        self.pow = ProofOfWork(secret)
        self.room = WaitingRoom(secret, settings.max_listeners)
        self.attack = AttackMode(
            settings.pow_difficulty,
            settings.attack_threshold,
            settings.attack_quiet_s,
            on=settings.attack_mode,
        )
        self.admitted = AdmittedCount(self._recount)
        # Proof-of-work answers by outcome, for /metrics.
        self.passes = {"issued": 0, "accepted": 0, "refused": 0}

    def _recount(self, now: float) -> int:
        return sum(space.listeners.present(now) for space in self.app.spaces.all())

    def full(self, now: float) -> bool:
        """Whether a newcomer would wait: the node is at capacity or people are in line."""
        capacity = self.room.capacity
        return capacity > 0 and self.admitted.value(now) + self.room.waiting(now) >= capacity

    def status(self, space_id: str | None, now: float) -> Status:
        return self.attack.status(space_id, now)

    def gate(
        self, request: web.Request, space: Space, body: dict[str, Any], now: float
    ) -> web.Response | None:
        """None when a session may start now; else the answer to send (wait or challenge)."""
        # Tickets and challenges are bound to the client as the guard sees it: an IPv4
        # address or IPv6 /64, read from X-Forwarded-For behind a trusted proxy (an edge).
        client = client_of(request).address
        ticket = body.get("ticket")
        if ticket is not None and not isinstance(ticket, str):
            raise BadRequest("ticket must be a string")
        # A ticket was only given after the proof of work (if any) was checked.
        if ticket is None and (challenge := self._check_pow(space, body, client, now)):
            return challenge
        try:
            decision = self.room.decide(self.admitted.value(now), ticket, client, now)
        except TicketRefused as exc:
            raise Forbidden(f"waiting-room ticket refused: {exc}; ask again without it") from None
        except LineFull as exc:
            raise Unavailable(str(exc), MAX_POLL_S) from None
        if isinstance(decision, Waiting):
            return _waiting(decision)
        self.admitted.add()
        return None

    def _check_pow(
        self, space: Space, body: dict[str, Any], client: str, now: float
    ) -> web.Response | None:
        difficulty = self.attack.status(space.id, now).difficulty
        if difficulty is None:
            return None
        proof = body.get("pow")
        why = "attack mode is on: solve the challenge and send it back with a nonce"
        if proof is not None:
            challenge, nonce = _proof(proof)
            try:
                self.pow.verify(challenge, nonce, client, now)
                self.passes["accepted"] += 1
                return None
            except PowRefused as exc:
                self.passes["refused"] += 1
                why = f"{exc}: solve this new challenge"
        self.passes["issued"] += 1
        return _challenge(self.pow.issue(client, difficulty, now), why)

    def metrics(self) -> str:
        """Prometheus series of admission control (docs/api.md#operations)."""
        now = self.app.clock.wall()
        node = self.attack.status(None, now).difficulty is not None
        lines = [
            "# HELP majlis_admission_seats Live listener sessions counted against the capacity.",
            "# TYPE majlis_admission_seats gauge",
            f"majlis_admission_seats {self.admitted.value(now)}",
            "# HELP majlis_admission_capacity Listener capacity of this node (0: no limit).",
            "# TYPE majlis_admission_capacity gauge",
            f"majlis_admission_capacity {self.room.capacity}",
            "# HELP majlis_admission_waiting People in the waiting line.",
            "# TYPE majlis_admission_waiting gauge",
            f"majlis_admission_waiting {self.room.waiting(now)}",
            "# HELP majlis_admission_attack_mode 1 while attack mode is on for the whole node.",
            "# TYPE majlis_admission_attack_mode gauge",
            f"majlis_admission_attack_mode {int(node)}",
            "# HELP majlis_admission_challenges_total Proof-of-work challenges sent.",
            "# TYPE majlis_admission_challenges_total counter",
            f"majlis_admission_challenges_total {self.passes['issued']}",
            "# HELP majlis_admission_passes_total Solved challenges accepted.",
            "# TYPE majlis_admission_passes_total counter",
            f"majlis_admission_passes_total {self.passes['accepted']}",
            "# HELP majlis_admission_pass_refusals_total Passes refused (wrong, expired, reused,"
            " foreign).",
            "# TYPE majlis_admission_pass_refusals_total counter",
            f"majlis_admission_pass_refusals_total {self.passes['refused']}",
        ]
        return "\n".join(lines) + "\n"


def _proof(proof: object) -> tuple[str, str]:
    if isinstance(proof, dict):
        challenge, nonce = proof.get("challenge"), proof.get("nonce")
        if isinstance(challenge, str) and isinstance(nonce, str):
            return challenge, nonce
    raise BadRequest('pow must be {"challenge": string, "nonce": string}')


def _waiting(decision: Waiting) -> web.Response:
    headers = {**NO_STORE, "Retry-After": str(decision.retry_after)}
    return web.json_response(decision.to_json(), status=202, headers=headers)


def _challenge(challenge: Challenge, why: str) -> web.Response:
    body = {"error": "pow_required", "status": 401, "detail": why, **challenge.to_json()}
    headers = {**NO_STORE, "WWW-Authenticate": POW_SCHEME}
    return web.json_response(body, status=401, headers=headers)


KEY = web.AppKey("admission", Admission)


def setup(web_app: web.Application, app: App) -> None:
    web_app[KEY] = Admission(app)
    web_app.add_routes(routes)


def metrics_text(web_app: web.Application) -> str:
    return web_app[KEY].metrics()


def room_state(request: web.Request, space_id: str) -> dict[str, bool]:
    """What the listening page needs before Play: must it solve a challenge, or wait?"""
    admission = request.app[KEY]
    now = admission.app.clock.wall()
    return {
        "attack_mode": admission.status(space_id, now).difficulty is not None,
        "waiting_room": admission.full(now),
    }


async def _switch(request: web.Request, app: App) -> int | None:
    """The difficulty asked by an {"enabled", "difficulty"} body, None to switch off."""
    body = await read_json_object(request, app.settings.max_json_bytes)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise BadRequest("enabled must be true or false")
    difficulty = body.get("difficulty", app.settings.pow_difficulty)
    if not isinstance(difficulty, int) or isinstance(difficulty, bool):
        raise BadRequest("difficulty must be an integer number of bits")
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise BadRequest(f"difficulty must be {MIN_DIFFICULTY}-{MAX_DIFFICULTY} bits")
    return difficulty if enabled else None


@routes.post("/api/attack-mode")
async def node_attack_mode(request: web.Request) -> web.Response:
    admission = request.app[KEY]
    app = admission.app
    require_admin(app, request)
    admission.attack.set_node(await _switch(request, app))
    status = admission.status(None, app.clock.wall())
    return web.json_response(status.to_json(), headers=NO_STORE)


@routes.post("/api/spaces/{space_id}/attack-mode")
async def space_attack_mode(request: web.Request) -> web.Response:
    admission = request.app[KEY]
    app = admission.app
    space = app.spaces.get(request.match_info["space_id"])
    if not is_admin(app, request):
        space_claims(app, request, space.id, Role.HOST)
    admission.attack.set_space(space.id, await _switch(request, app))
    status = admission.status(space.id, app.clock.wall())
    return web.json_response(status.to_json(), headers=NO_STORE)

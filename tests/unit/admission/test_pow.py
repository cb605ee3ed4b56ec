"""Proof-of-work challenges: what is accepted, what is refused and why, and what it costs."""

from __future__ import annotations

import hashlib
import time

import pytest

from majlis.admission.pow import (
    CHALLENGE_LIFETIME_S,
    PowRefused,
    ProofOfWork,
    leading_zero_bits,
    solve,
)

SECRET = b"k" * 32
HOME = "192.0.2.7"
NOW = 1_800_000_000.0
BITS = 8


@pytest.fixture
def pow_() -> ProofOfWork:
    return ProofOfWork(SECRET)


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(b"\x00\x00\x80" + b"\x00" * 29) == 16
    assert leading_zero_bits(b"\x01" + b"\xff" * 31) == 7
    assert leading_zero_bits(b"\xff" * 32) == 0
    assert leading_zero_bits(b"\x00" * 32) == 256


def test_the_right_nonce_is_accepted_and_really_has_the_zero_bits(pow_: ProofOfWork) -> None:
    challenge = pow_.issue(HOME, BITS, NOW)
    assert challenge.expires == int(NOW) + CHALLENGE_LIFETIME_S
    nonce = solve(challenge.token, BITS)
    digest = hashlib.sha256((challenge.token + nonce).encode()).digest()
    assert digest[0] == 0
    assert pow_.verify(challenge.token, nonce, HOME, NOW + 1) == BITS
    # A challenge plus a nonce of up to 16 characters fits in one SHA-256 block (55 bytes).
    assert len(challenge.token) + 16 <= 55


def _refusal(pow_: ProofOfWork, token: str, nonce: str, client: str, now: float) -> str:
    with pytest.raises(PowRefused) as caught:
        pow_.verify(token, nonce, client, now)
    return str(caught.value)


def _wrong_nonce(token: str, bits: int = BITS) -> str:
    n = 0
    while leading_zero_bits(hashlib.sha256(f"{token}{n}".encode()).digest()) >= bits:
        n += 1
    return str(n)


def test_refusals_say_why(pow_: ProofOfWork) -> None:
    c = pow_.issue(HOME, BITS, NOW)
    nonce = solve(c.token, BITS)
    assert _refusal(pow_, c.token, _wrong_nonce(c.token), HOME, NOW) == (
        "the nonce does not solve the challenge"
    )
    assert "not issued to this address" in _refusal(pow_, c.token, nonce, "192.0.2.8", NOW)
    assert _refusal(pow_, c.token, nonce, HOME, c.expires) == "the challenge has expired"
    assert "letters or digits" in _refusal(pow_, c.token, "1 2", HOME, NOW)
    assert "letters or digits" in _refusal(pow_, c.token, "9" * 17, HOME, NOW)
    assert _refusal(pow_, "nonsense", nonce, HOME, NOW) == "the challenge is malformed"
    # Everything above left the challenge unused: it still admits, once.
    pow_.verify(c.token, nonce, HOME, NOW)
    assert _refusal(pow_, c.token, nonce, HOME, NOW) == "this challenge was already used"


def test_forged_challenges_are_refused(pow_: ProofOfWork) -> None:
    c = pow_.issue(HOME, BITS, NOW)
    difficulty, expires, salt, mac = c.token.split(".")
    easier = f"1.{expires}.{salt}.{mac}"
    later = f"{difficulty}.{int(expires) + 3600}.{salt}.{mac}"
    other_key = ProofOfWork(b"x" * 32).issue(HOME, BITS, NOW).token
    for forged, bits in ((easier, 1), (later, BITS), (other_key, BITS)):
        reason = _refusal(pow_, forged, solve(forged, bits), HOME, NOW)
        assert reason == "the challenge was not issued to this address by this server"


def test_used_passes_are_forgotten_after_they_expire(pow_: ProofOfWork) -> None:
    for i in range(5):
        c = pow_.issue(HOME, 4, NOW + i)
        pow_.verify(c.token, solve(c.token, 4), HOME, NOW + i)
    assert len(pow_._used) == 5
    late = pow_.issue(HOME, 4, NOW + CHALLENGE_LIFETIME_S + 10)
    pow_.verify(late.token, solve(late.token, 4), HOME, NOW + CHALLENGE_LIFETIME_S + 10)
    assert len(pow_._used) == 1


def test_difficulty_bounds(pow_: ProofOfWork) -> None:
    with pytest.raises(ValueError, match="1-32 bits"):
        pow_.issue(HOME, 0, NOW)
    with pytest.raises(ValueError, match="1-32 bits"):
        pow_.issue(HOME, 33, NOW)


def test_verification_costs_microseconds(pow_: ProofOfWork) -> None:
    """Printed, not asserted: the machine is shared. Run with -s to see it."""
    rounds = 2000
    passes = []
    for _ in range(rounds):
        c = pow_.issue(HOME, 4, NOW)
        passes.append((c.token, solve(c.token, 4)))
    start = time.perf_counter()
    for token, nonce in passes:
        pow_.verify(token, nonce, HOME, NOW)
    accepted = (time.perf_counter() - start) / rounds
    bad = [(t, _wrong_nonce(t, 4)) for t, _ in passes]
    start = time.perf_counter()
    for token, nonce in bad:
        with pytest.raises(PowRefused):
            pow_.verify(token, nonce, "192.0.2.99", NOW)
    refused = (time.perf_counter() - start) / rounds
    print(f"\nPoW verify: {accepted * 1e6:.1f} µs accepted, {refused * 1e6:.1f} µs forged/other")
    assert len(pow_._used) == rounds

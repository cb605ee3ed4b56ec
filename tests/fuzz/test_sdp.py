"""Fuzzing SDP offers: check_offer alone, then the real WHIP endpoint of a live space."""

from __future__ import annotations

import time

import pytest
from hypothesis import example, given

from majlis.errors import BadRequest, PayloadTooLarge
from majlis.ingest.sdp import check_offer
from tests.fuzz import corpus
from tests.fuzz.client import request
from tests.fuzz.live import LiveSpace
from tests.fuzz.strategies import fuzz, sdp_offers

LIMIT = 64 * 1024


@fuzz(400)
@given(offer=sdp_offers())
@example(offer=b"")
@example(offer=b"v=0")
@example(offer=b"\xff\xfe\x00")
@example(offer=b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF \xd9\xa3\r\na=fingerprint:x")
@example(offer=b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:\xc2\xb2 x\r\na=fingerprint:x")
def test_check_offer_refuses_only_with_bad_request(offer: bytes) -> None:
    try:
        text = check_offer(offer, LIMIT)
    except (BadRequest, PayloadTooLarge) as exc:
        assert exc.message and len(exc.message) < 200, exc.message
    else:
        assert text.startswith("v=0")


@pytest.mark.parametrize("offer", corpus.sdp_offers(), ids=lambda o: o[:16].hex())
def test_check_offer_accepts_every_real_offer(offer: bytes) -> None:
    assert check_offer(offer, LIMIT) == offer.decode()


def _publish(live: LiveSpace, offer: bytes, content_type: str = "application/sdp") -> int:
    headers = {
        "Authorization": f"Bearer {live.space['speaker_token']}",
        "Content-Type": content_type,
    }
    reply = request(live.base, "POST", f"/whip/{live.id}?name=fuzz", offer, headers)
    live.check(reply, offer)
    if reply.status == 201:
        assert reply.body.startswith(b"v=0"), reply.body[:100]
        # Leave the stage at once: the fuzzer must not fill it, and DELETE must clean up.
        gone = request(live.base, "DELETE", reply.headers["location"], headers=headers)
        assert gone.status == 200, (gone.status, gone.body)
    else:
        assert 400 <= reply.status < 500, (reply.status, reply.body)
        # A message that says what was wrong: aiortc raises some errors without one.
        assert not reply.json()["detail"].rstrip().endswith(":"), reply.body
    return reply.status


def test_whip_answers_every_corpus_offer(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()
    for offer in corpus.sdp_offers():
        # Real publishers' offers: every one is answered.
        assert _publish(live, offer) == 201, offer[:200]
    live.assert_healthy_since(mark, started)


def test_whip_endpoint_under_mutated_offers(live: LiveSpace) -> None:
    """Every answer is 201 or a 4xx JSON error; the live space keeps playing throughout."""
    mark, started = live.log_mark(), time.perf_counter()

    @fuzz(150)
    @given(offer=sdp_offers())
    def post(offer: bytes) -> None:
        _publish(live, offer)

    post()
    live.assert_healthy_since(mark, started)

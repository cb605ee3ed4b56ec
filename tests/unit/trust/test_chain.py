"""The hash chain: its formula, byte for byte, and what breaks it."""

from __future__ import annotations

import hashlib

import pytest

from majlis.trust.chain import Chain, Link, duration_us, first_broken_link, genesis, link


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_genesis_is_the_documented_formula() -> None:
    init = h(b"init bytes")
    expected = h(b"majlis-provenance-v1\0" + "مجلس-1".encode() + b"\0" + init)
    assert genesis("مجلس-1", init) == expected


def test_link_is_the_documented_formula() -> None:
    prev, seg = h(b"prev"), h(b"segment")
    expected = h(prev + (7).to_bytes(8, "big") + seg + (1_066_667).to_bytes(8, "big"))
    assert link(prev, 7, seg, 1.0666666666666667) == expected


def test_durations_are_whole_microseconds() -> None:
    assert duration_us(1.0666666666666667) == 1_066_667
    assert duration_us(0.0) == 0
    # Two printings of the same duration make the same link.
    assert link(b"p" * 32, 1, b"s" * 32, 0.2133333) == link(b"p" * 32, 1, b"s" * 32, 0.21333330001)


def test_link_refuses_negative_numbers() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        link(b"p" * 32, -1, b"s" * 32, 1.0)


def test_chain_grows_from_genesis() -> None:
    chain = Chain("space", h(b"init"))
    assert chain.head == genesis("space", h(b"init"))
    first = chain.append(0, h(b"a"), 1.0)
    second = chain.append(1, h(b"b"), 1.0)
    assert first.link == link(chain.genesis, 0, h(b"a"), 1.0)
    assert second.link == link(first.link, 1, h(b"b"), 1.0)
    assert chain.head == second.link
    assert first_broken_link("space", h(b"init"), chain.links) is None


def test_chain_refuses_segments_out_of_order() -> None:
    chain = Chain("space", h(b"init"))
    chain.append(3, h(b"a"), 1.0)
    with pytest.raises(ValueError, match="segment 3 appended after segment 3"):
        chain.append(3, h(b"b"), 1.0)


def _chain(n: int) -> Chain:
    chain = Chain("space", h(b"init"))
    for msn in range(n):
        chain.append(msn, h(bytes([msn])), 1.0)
    return chain


def test_a_changed_hash_breaks_the_chain_there() -> None:
    links = list(_chain(5).links)
    links[2] = Link(2, h(b"other"), 1.0, links[2].link)
    assert first_broken_link("space", h(b"init"), links) == 2


def test_a_dropped_segment_breaks_the_chain_at_the_next_link() -> None:
    links = list(_chain(5).links)
    del links[1]
    assert first_broken_link("space", h(b"init"), links) == 1


def test_a_changed_duration_or_space_breaks_the_chain() -> None:
    links = list(_chain(3).links)
    longer = [links[0], Link(1, links[1].sha256, 1.5, links[1].link), links[2]]
    assert first_broken_link("space", h(b"init"), longer) == 1
    assert first_broken_link("other", h(b"init"), links) == 0
    assert first_broken_link("space", h(b"other init"), links) == 0

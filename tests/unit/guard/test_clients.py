from __future__ import annotations

import pytest

from majlis.guard.clients import (
    Client,
    client_address,
    client_keys,
    parse_address,
    parse_networks,
)

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ff::/48"])


def keys(peer: str | None, xff: str | None = None) -> Client:
    return client_keys(client_address(peer, xff, PROXIES))


def test_ipv4_is_keyed_by_address_and_slash_24() -> None:
    assert keys("203.0.113.7") == Client("203.0.113.7", "203.0.113.0/24")
    assert keys("::ffff:203.0.113.7") == Client("203.0.113.7", "203.0.113.0/24")


def test_ipv6_is_keyed_by_slash_64_and_slash_48() -> None:
    a = keys("2001:db8:1:2::1")
    assert a == Client("2001:db8:1:2::/64", "2001:db8:1::/48")
    assert keys("2001:db8:1:2:ffff::9") == a, "one host holds a whole /64"
    assert keys("fe80::1%eth0").address == "fe80::/64"


def test_unknown_peers_share_one_key() -> None:
    assert keys(None) == keys("not an address") == Client("unknown", "unknown")


def test_forwarded_for_is_ignored_from_anyone_but_a_trusted_proxy() -> None:
    assert keys("203.0.113.7", "198.51.100.1").address == "203.0.113.7"


def test_behind_a_trusted_proxy_the_first_untrusted_hop_from_the_right_counts() -> None:
    # The client forged the left-most entry; the proxy appended the address it saw.
    assert keys("10.1.2.3", "1.2.3.4, 198.51.100.9").address == "198.51.100.9"
    # Two proxies deep.
    assert keys("10.1.2.3", "198.51.100.9, 10.9.9.9").address == "198.51.100.9"
    assert keys("2001:db8:ff::1", "2001:db8:5::7").prefix == "2001:db8:5::/48"


def test_a_trusted_proxy_without_forwarded_for_is_itself_the_client() -> None:
    assert keys("10.1.2.3").address == "10.1.2.3"
    assert keys("10.1.2.3", "10.2.2.2").address == "10.2.2.2"


def test_a_malformed_hop_stops_the_walk() -> None:
    assert keys("10.1.2.3", "198.51.100.9, garbage").address == "10.1.2.3"


def test_parse_address_unwraps_mapped_ipv4() -> None:
    assert str(parse_address("::ffff:192.0.2.1")) == "192.0.2.1"
    assert parse_address("") is None


def test_bad_trusted_proxy_is_refused() -> None:
    with pytest.raises(ValueError, match="not an address or CIDR block: 'nope'"):
        parse_networks(["nope"])
    assert [str(n) for n in parse_networks(["192.0.2.1", "10.0.0.1/8"])] == [
        "192.0.2.1/32",
        "10.0.0.0/8",
    ]


def test_exempt_networks_mark_the_client() -> None:
    loopback = parse_networks(["127.0.0.0/8", "::1"])
    assert client_keys(parse_address("127.0.0.9"), loopback).exempt
    assert client_keys(parse_address("::1"), loopback).exempt
    assert not client_keys(parse_address("203.0.113.1"), loopback).exempt

"""The per-address key: what counts as one client address for the per-address caps."""

from __future__ import annotations

import pytest

from quartapp.identity import address_key


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("203.0.113.7", "a:203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "a:2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "a:2001:db8:1:2::/64"),  # the same /64: one client
        ("2001:db8:1:3::1", "a:2001:db8:1:3::/64"),  # the next /64: another
        ("::ffff:198.51.100.4", "a:198.51.100.4"),  # IPv4 over a dual-stack socket: the IPv4 address
        ("fe80::1%eth0", "a:fe80::/64"),
        (None, "a:unknown"),
        ("not an address", "a:not an address"),
    ],
)
def test_an_address_is_counted_by_its_ipv4_address_or_its_ipv6_64(remote: str | None, key: str) -> None:
    assert address_key(remote) == key

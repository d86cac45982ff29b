"""The login throttle's wider tallies: a /48 holder gets no more guesses than
one /64, and guessing from many places is slowed server-wide, while an
unrelated address is never refused for what others did."""

from __future__ import annotations

import asyncio

import pytest

from clock_util import Clock
from ds2proxy.admin.throttle import LoginThrottle, address_key, counted_as
from ds2proxy.errors import RateLimited
from test_admin_units import RecordingSleep


def in_one_48(i: int) -> str:
    """The i-th /64 of 2001:db8:1::/48, as the gate keys it."""
    return address_key(f"2001:db8:1:{i:x}::{i + 1:x}")


def test_a_slash_64_also_counts_toward_its_slash_48():
    assert counted_as(in_one_48(7)) == ("2001:db8:1:7::/64", "2001:db8:1::/48")
    assert counted_as(address_key("203.0.113.9")) == ("203.0.113.9",)
    assert counted_as(address_key("::ffff:203.0.113.9")) == ("203.0.113.9",)


async def test_guesses_across_one_slash_48_share_its_free_attempts():
    """Each /64 of a /48 had its own five free guesses (65,536 x 5 of them)."""
    sleep = RecordingSleep()
    throttle = LoginThrottle(free_attempts=5, base_delay=1, max_delay=60, sleep=sleep,
                             clock=Clock())
    for i in range(10):
        address = in_one_48(i)  # a fresh /64 every time
        with throttle.checking(address):
            pass
        await throttle.failed(address)
        assert throttle.failures(address) == 1
    assert sleep.delays == [1, 2, 4, 8, 16]
    assert throttle.failures("2001:db8:1::/48") == 10


async def test_held_guesses_in_a_slash_48_refuse_its_other_slash_64s_only():
    sleep = RecordingSleep(hold=True)
    throttle = LoginThrottle(free_attempts=0, base_delay=5, max_pending=2, sleep=sleep,
                             clock=Clock())
    held = [asyncio.create_task(throttle.failed(in_one_48(i))) for i in range(2)]
    await asyncio.sleep(0)
    assert throttle.pending("2001:db8:1::/48") == 2
    with pytest.raises(RateLimited) as info:
        throttle.admit(in_one_48(99))
    assert "2001:db8:1::/48" in info.value.message
    # Another /48, and IPv4 users, are not refused for it.
    throttle.admit(address_key("2001:db8:2::1"))
    with throttle.checking(address_key("198.51.100.4")):
        pass
    sleep.release.set()
    await asyncio.gather(*held)
    assert throttle.pending("2001:db8:1::/48") == 0
    throttle.admit(in_one_48(99))


async def test_many_addresses_guessing_slow_every_wrong_answer_but_lock_nobody_out():
    """Past the server-wide tally, a wrong answer from anywhere (even a
    first one) is held, while a right key from an unrelated address still
    gets in at once and nobody is refused unchecked."""
    clock, sleep = Clock(), RecordingSleep()
    throttle = LoginThrottle(free_attempts=5, base_delay=1, max_delay=60, sleep=sleep,
                             clock=clock, global_free_attempts=20)
    for i in range(20):  # a fresh /48 each time: nothing per address is earned
        await throttle.failed(address_key(f"2001:db8:{i + 10:x}::1"))
    assert sleep.delays == []
    ipv4 = address_key("203.0.113.50")
    with throttle.checking(ipv4):
        pass  # a right key: admitted and checked, no record kept
    assert throttle.failures(ipv4) == 0
    with throttle.checking(ipv4):
        pass
    await throttle.failed(ipv4)  # its first typo, held because of the others
    assert sleep.delays == [1] and throttle.failures(ipv4) == 1
    clock.now += throttle.forget_after + 1  # a quiet spell: the tally is forgotten
    await throttle.failed(address_key("198.51.100.9"))
    assert sleep.delays == [1]

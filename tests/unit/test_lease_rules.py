"""The pure lease decisions: whose lease it is, when it has lapsed, who may take it, what a sweep re-sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ingest.leases import (
    PARSE,
    QUEUED,
    HeldLeases,
    Lease,
    LeaseState,
    dead_owners,
    embed_unit,
    lapsed,
    may_take,
    new_owner,
    owner_process,
    to_resend,
)
from workers.messages import message_for

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
JOB = uuid.UUID("00000000-0000-0000-0000-000000000001")


def state(owner: str | None, *, expires_in_s: float, unit: str = PARSE, generation: int = 1) -> LeaseState:
    return LeaseState(
        JOB, unit, owner, generation, NOW - timedelta(seconds=3), NOW + timedelta(seconds=expires_in_s)
    )


def test_an_owner_id_names_its_host_and_pid_and_differs_between_processes_with_the_same_pid() -> None:
    a, b = new_owner("web-1", 7), new_owner("web-1", 7)
    assert owner_process(a) == owner_process(b) == ("web-1", 7)
    assert a != b  # a restarted container runs as the same pid: its old leases are not its own
    assert owner_process("db.internal:5432:ab12cd34") == ("db.internal", 5432)
    assert owner_process("not an owner") is None


def test_dead_owners_are_gone_processes_of_this_host_only() -> None:
    alive_pids = {10}
    owners = ["here:10:aa", "here:11:bb", "elsewhere:11:cc", "garbage"]
    assert dead_owners(owners, host="here", alive=lambda pid: pid in alive_pids) == {"here:11:bb"}


@pytest.mark.parametrize(
    ("owner", "expires_in_s", "dead", "expected"),
    [
        ("w:1:a", 5, set(), False),  # renewed, in time
        ("w:1:a", 0, set(), True),  # expired this instant: its heartbeat stopped
        ("w:1:a", -30, set(), True),
        ("w:1:a", 5, {"w:1:a"}, True),  # its process is gone: no need to wait for the expiry
        (None, 5, set(), False),  # re-sent, waiting to be taken
        (None, -1, set(), True),  # re-sent and not taken within a lease: the message was lost again
    ],
)
def test_lapsed(owner: str | None, expires_in_s: float, dead: set[str], expected: bool) -> None:
    assert lapsed(state(owner, expires_in_s=expires_in_s), now=NOW, dead=dead) is expected


def test_who_may_take_a_unit() -> None:
    me, other = "w:1:me", "w:2:other"
    assert may_take(None, me=me, mine_now=False, now=NOW, dead=set())  # never taken
    assert may_take(state(None, expires_in_s=5), me=me, mine_now=False, now=NOW, dead=set())  # re-sent
    assert not may_take(state(other, expires_in_s=5), me=me, mine_now=False, now=NOW, dead=set())  # at work
    assert may_take(state(other, expires_in_s=-1), me=me, mine_now=False, now=NOW, dead=set())  # lapsed
    assert may_take(state(other, expires_in_s=5), me=me, mine_now=False, now=NOW, dead={other})  # died
    # This process's own lease: another of its threads is at work on it, or it is a leftover.
    assert not may_take(state(me, expires_in_s=5), me=me, mine_now=True, now=NOW, dead=set())
    assert may_take(state(me, expires_in_s=5), me=me, mine_now=False, now=NOW, dead=set())


def test_a_sweep_resends_exactly_the_lapsed_leases() -> None:
    live = state("w:1:a", expires_in_s=10, unit=PARSE)
    frozen = state("w:2:b", expires_in_s=-2, unit=embed_unit(0, 255))
    killed = state("w:3:c", expires_in_s=15, unit=embed_unit(256, 511))
    waiting = state(None, expires_in_s=10, unit=QUEUED)
    assert to_resend([live, frozen, killed, waiting], now=NOW, dead={"w:3:c"}) == [frozen, killed]


def test_each_unit_is_sent_again_as_the_message_that_does_it() -> None:
    assert message_for(PARSE, JOB) == ("parse_document", (str(JOB),))
    assert message_for(QUEUED, JOB) == ("parse_document", (str(JOB),))
    assert message_for(embed_unit(256, 511), JOB) == ("embed_chunks", (str(JOB), 256, 511))


def test_held_leases_are_what_the_heartbeat_renews() -> None:
    held = HeldLeases("w:1:me")
    parse, batch = Lease(JOB, PARSE, held.owner, 3), Lease(JOB, embed_unit(0, 9), held.owner, 1)
    held.add(parse)
    held.add(batch)
    assert held.holds(JOB, PARSE) and {lease.unit for lease in held.snapshot()} == {PARSE, "embed:0-9"}
    held.discard(JOB, PARSE)
    assert not held.holds(JOB, PARSE) and held.snapshot() == [batch]

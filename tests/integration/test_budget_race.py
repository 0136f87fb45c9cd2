"""Many workers race for one budget: threads sharing a pool and separate processes, each with its own
connections. Whatever the interleaving, the charges never exceed any limit and no reservation is left."""

from __future__ import annotations

import multiprocessing
import random
import threading
from decimal import Decimal

import psycopg

from costs import ledger
from costs.budget import BudgetExhausted
from costs.charges import Charge, embed_charge, parse_estimate
from costs.meter import Meter
from costs.prices import DEFAULT_PRICES
from ingest.config import Settings
from ingest.db.pool import open_pool
from ingest.formats.pages import PageCount

LIMITS = {"openai": Decimal("0.002"), "llamaparse": Decimal("0.0200"), "all": Decimal("0.0210")}
ATTEMPTS = 25
PROCESSES, THREADS = 4, 8


def _estimate(rng: random.Random, service: str) -> Charge:
    if service == "openai":  # 2,000..30,000 tokens: fractions of a micro-dollar in every amount
        return embed_charge(rng.randint(2_000, 30_000), model="text-embedding-3-small", prices=DEFAULT_PRICES)
    return parse_estimate(PageCount(rng.randint(1, 3), exact=True), tier="fast", prices=DEFAULT_PRICES)


def _work(meter: Meter, name: str, seed: int, rounds) -> list[tuple[str, str]]:
    """Reserve, then settle at or below the estimate or release; return (key, charged amount) per charge.

    Every worker starts each attempt at the same moment (`rounds`, a barrier): bursts at the boundary.
    """
    rng = random.Random(seed)
    charged: list[tuple[str, str]] = []
    for n in range(ATTEMPTS):
        rounds.wait(timeout=60)
        service = rng.choice(("openai", "llamaparse"))
        estimate = _estimate(rng, service)
        key = f"{name}:{n}"
        try:
            held = meter.reserve(key=key, service=service, stage="race", estimate=estimate)
        except BudgetExhausted:
            continue
        if rng.random() < 0.2:  # the vendor call failed: nothing billed
            meter.release(held)
            continue
        actual = Charge(estimate.usd * rng.choice((1, 1, Decimal("0.75"))))
        meter.settle(held, actual)
        charged.append((key, str(actual.usd)))
    return charged


def _process(
    conninfo: str, name: str, seed: int, rounds, results
) -> None:  # spawned: own pool, own connections
    settings = Settings(_env_file=None, database_url=conninfo)
    pool = open_pool(conninfo, max_size=2, name=name)
    try:
        results.put(_work(Meter(settings, pool), name, seed, rounds))
    finally:
        pool.close()


def test_threads_and_processes_never_overshoot_a_budget(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)
    with psycopg.connect(database_url) as conn:
        for service, amount in LIMITS.items():
            ledger.set_limit(conn, service, amount)

    ctx = multiprocessing.get_context("spawn")
    rounds, results = ctx.Barrier(PROCESSES + THREADS), ctx.Queue()
    processes = [
        ctx.Process(target=_process, args=(database_url, f"p{i}", i, rounds, results))
        for i in range(PROCESSES)
    ]
    for p in processes:
        p.start()

    pool = open_pool(database_url, max_size=THREADS, name="threads")
    meter = Meter(settings, pool)
    thread_results: list[list[tuple[str, str]]] = []
    threads = [
        threading.Thread(target=lambda i=i: thread_results.append(_work(meter, f"t{i}", 100 + i, rounds)))
        for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    charges = [c for part in thread_results for c in part]
    for _ in processes:
        charges += results.get(timeout=120)
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0

    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT service, sum(amount_usd) FILTER (WHERE state = 'charged'),"
            " count(*) FILTER (WHERE state = 'reserved'), count(*) FILTER (WHERE state = 'charged')"
            " FROM cost_entries GROUP BY service"
        ).fetchall()
    pool.close()
    spent = {service: amount for service, amount, _, _ in rows}
    assert sum(reserved for _, _, reserved, _ in rows) == 0, "a reservation was left behind"
    assert spent["openai"] <= LIMITS["openai"]
    assert spent["llamaparse"] <= LIMITS["llamaparse"]
    assert spent["openai"] + spent["llamaparse"] <= LIMITS["all"]
    # The ledger holds exactly what the workers were charged, no more, no less.
    assert sum(n for *_, n in rows) == len(charges)
    assert spent["openai"] + spent["llamaparse"] == sum(Decimal(amount) for _, amount in charges)
    # The race was real: the budget ran out and refused some work.
    assert len(charges) < (PROCESSES + THREADS) * ATTEMPTS


def test_shares_reserved_together_never_overshoot_and_stop_at_the_first_refused(settings: Settings) -> None:
    """A batch's shares reserved in one transaction (`Meter.reserve_many`), while single reservations race
    it: the shares that fit are held in order, the first that does not fit ends the run, a charged share is
    returned as it is, and no limit is overshot."""
    from costs.meter import Wanted

    with open_pool(settings.database_url or "", max_size=8) as pool:
        meter = Meter(settings, pool)
        with pool.connection() as conn:
            ledger.set_limit(conn, "openai", Decimal("0.0001"))
        share = Charge(Decimal("0.00003"), {"tokens": 1500})
        first = meter.reserve_many([Wanted(f"doc{n}:embed:0-0", "openai", "embed", share) for n in range(5)])
        assert [e.key for e in first] == [f"doc{n}:embed:0-0" for n in range(3)]  # 3 x 0.00003 fit, not 4
        meter.settle(first[0], share)
        again = meter.reserve_many([Wanted(f"doc{n}:embed:0-0", "openai", "embed", share) for n in range(5)])
        assert [e.state for e in again] == ["charged", "reserved", "reserved"]  # taken over, not re-held
        for entry in again[1:]:
            meter.release(entry)  # room left: 0.00007, two shares, for six racing batches of three
        racers = [
            threading.Thread(
                target=lambda n=n: meter.reserve_many(
                    [Wanted(f"race{n}:{i}", "openai", "embed", share) for i in range(3)]
                )
            )
            for n in range(6)
        ]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        with pool.connection() as conn:
            held, raced = conn.execute(
                "SELECT coalesce(sum(amount_usd), 0), count(*) FILTER (WHERE key LIKE 'race%%')"
                " FROM cost_entries WHERE NOT simulated AND state IN ('reserved', 'charged')"
            ).fetchone()
    assert raced == 2 and held == Decimal("0.00009")  # exactly what fits, never more

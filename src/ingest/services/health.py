"""Readiness: each dependency and each service, ok or why not. Never shows a key, only whether one is set.

A service is reported with its mode, whether its key is set, its circuit's state and the budget left today
(openai also with the chunks waiting for upgrade). It is not ok when real mode cannot serve it: no key
(jobs fail) or an open circuit (jobs defer). A spent budget is a limit someone set, not a fault: ok.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal

from costs.money import fmt_usd
from costs.report import DayReport
from ingest.store import upgrades
from router.circuit import State
from router.decide import Mode
from router.modes import SERVICES
from workers.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    info: dict[str, object] = field(default_factory=dict)  # the detail as data, for `--json`


@dataclass(slots=True)
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _database(rt: Runtime) -> Check:
    try:
        with rt.pool.connection(timeout=5) as conn:
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if version is None:
            return Check("database", False, "the pgvector extension is not installed")
        where = "embedded" if rt.settings.embedded_database else "DATABASE_URL"
        return Check("database", True, f"{where}, pgvector {version[0]}")
    except Exception as exc:  # noqa: BLE001  (a health check reports every failure instead of raising)
        return Check("database", False, " ".join(str(exc).split())[:200])


def _blobs(rt: Runtime) -> Check:
    try:
        rt.blobs.check()
        return Check("blob_store", True, rt.settings.blob_backend)
    except Exception as exc:  # noqa: BLE001  (reported as the check's failure)
        return Check("blob_store", False, " ".join(str(exc).split())[:200])


def _broker(rt: Runtime) -> Check:
    settings = rt.settings
    try:
        if settings.redis_url:
            import redis

            redis.Redis.from_url(settings.redis_url, socket_timeout=3).ping()
            return Check("broker", True, "redis")
        if settings.rabbitmq_url:
            import pika

            pika.BlockingConnection(pika.URLParameters(settings.rabbitmq_url)).close()
            return Check("broker", True, "rabbitmq")
        return Check("broker", True, "in-process")
    except Exception as exc:  # noqa: BLE001  (reported as the check's failure)
        return Check("broker", False, " ".join(str(exc).split())[:200] or type(exc).__name__)


def budget_left(report: DayReport, service: str) -> Decimal | None:
    """Dollars `service` may still spend today under its own and the overall limit; None: no limit."""
    own = report.services[service]
    room = []
    if own.limit is not None:
        room.append(own.limit - own.spent - own.reserved)
    if report.total.limit is not None:
        room.append(report.total.limit - report.total.spent - report.total.reserved)
    return max(Decimal(0), min(room)) if room else None


def _service(rt: Runtime, service: str, mode: Mode, report: DayReport) -> Check:
    key_set = rt.router.key_present(service)
    circuit = rt.router.circuits.circuit(service)
    state = rt.router.circuits.state(service)
    left = budget_left(report, service)
    info: dict[str, object] = {
        "mode": mode.value,
        "key_present": key_set,
        "circuit": state.value,
        "budget_left_usd": None if left is None else fmt_usd(left),
    }
    parts = [f"mode {mode.value}", f"key {'set' if key_set else 'not set'}", f"circuit {state.value}"]
    if state is not State.CLOSED and circuit.reason:
        parts[-1] += f" ({circuit.reason[:120]})"
    parts.append("no budget limit" if left is None else f"budget ${fmt_usd(left)} left today")
    if service == "openai":
        with rt.pool.connection(timeout=5) as conn:
            waiting = upgrades.count(conn)
        info["chunks_waiting_for_upgrade"] = waiting
        parts.append(f"{waiting} chunks wait for upgrade")
    ok = mode is not Mode.REAL or (key_set and state is not State.OPEN)
    return Check(service, ok, ", ".join(parts), info)


def _services(rt: Runtime) -> list[Check]:
    try:
        modes = rt.router.modes.all()
        report = rt.router.meter.report()
    except Exception as exc:  # noqa: BLE001  (the database check says why; each service cannot be read)
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        return [Check(service, False, f"cannot read its state: {why}") for service in SERVICES]
    checks = []
    for service, mode in sorted(modes.items()):
        try:
            checks.append(_service(rt, service, mode, report))
        except Exception as exc:  # noqa: BLE001  (e.g. Redis, the circuit's store, is down)
            checks.append(Check(service, False, " ".join(str(exc).split())[:200] or type(exc).__name__))
    return checks


def check_all(rt: Runtime) -> Report:
    return Report([_database(rt), _blobs(rt), _broker(rt), *_services(rt)])

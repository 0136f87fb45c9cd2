"""structlog setup: readable in a terminal, JSON in production, secrets redacted in both."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ingest.config import Settings

_SECRET_KEYS = re.compile(r"(api_?key|secret|token|password|authorization|signature)", re.I)
# Values that look like keys whatever field they are in: OpenAI (sk-…), LlamaCloud (llx-…), ours (ik_…),
# bearer tokens and passwords inside URLs.
_SECRET_VALUES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|llx-[A-Za-z0-9_\-]{8,}|ik_[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=]{8,}"
    r"|(?<=Bearer )[A-Za-z0-9._\-]{8,}|(?<=://)[^/\s:@]+:[^/\s@]+(?=@))"
)
REDACTED = "[redacted]"


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUES.sub(REDACTED, value)
    return value


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: drop values of secret-named fields and scrub key-shaped strings from all others."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value is not None:
            event[key] = REDACTED
        else:
            event[key] = redact_value(value)
    return event


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of writing, not the stream it was at configuration:
    a test runner (or Dramatiq's worker processes) swap it, and a closed old stream must never be used."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    settings: Settings, *, interactive: bool, quiet: bool = False, stdlib: bool = False
) -> None:
    """`quiet` (the CLI) shows warnings and errors only, unless INGEST_LOG_LEVEL asks for more.

    `stdlib` (worker processes) also renders the standard library's records (Dramatiq's retries, psycopg)
    through the same processors, replacing the handlers set up before: a worker's every line is then
    JSON in production, carries the job's context and is redacted.
    """
    name = settings.log_level if (not quiet or "log_level" in settings.model_fields_set) else "WARNING"
    level = logging.getLevelName(name.upper())
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not interactive)
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())  # type: ignore[arg-type]
    if not stdlib:
        logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(levelname)s %(name)s: %(message)s")
        return
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    # Third-party INFO lines (every HTTP request of the vendor SDKs) would drown the pipeline's own;
    # Dramatiq's (process start and stop, expected failures) are worth keeping.
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("dramatiq").setLevel(level if isinstance(level, int) else logging.INFO)

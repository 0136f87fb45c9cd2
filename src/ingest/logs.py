"""structlog setup: readable in a terminal, JSON in production, secrets redacted in both."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from ingest.config import Settings

_SECRET_KEYS = re.compile(r"(api_?key|secret|token|password|authorization|signature)", re.IGNORECASE)
# Values that look like keys whatever field they are in: OpenAI (sk-…), LlamaCloud (llx-…), ours (ik_…),
# bearer and basic credentials, passwords inside URLs (`redis://:pw@` has no user name) and in
# `password=` options of connection strings.
_SECRET_VALUES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|llx-[A-Za-z0-9_\-]{8,}|ik_[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=]{8,}"
    r"|(?<=Bearer )[A-Za-z0-9._\-]{8,}|(?<=Basic )[A-Za-z0-9+/=]{8,}"
    r"|(?<=://)[^/\s:@]*:[^/\s@]+(?=@)|(?<=password=)[^&\s'\"]+)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
# Shorter configured secrets are left to the patterns: replacing every "admin" in every line would
# garble the logs without protecting anything a guess would not find.
_MIN_KNOWN_SECRET = 8
# The configured secrets themselves, whatever their shape (a key need not start with sk-): set by
# configure_logging from the process's settings, so every line and every user-facing error of the process
# is scrubbed of them.
_known_secrets: tuple[str, ...] = ()


def configured_secrets(settings: Settings) -> tuple[str, ...]:
    """The secret values of the settings: vendor keys, signing secrets, passwords of the service URLs."""
    keys = (
        settings.openai_api_key,
        settings.llama_cloud_api_key,
        settings.llamaparse_webhook_secret,
        settings.callback_signing_secret,
        settings.supabase_key,
    )
    found = [key.get_secret_value() for key in keys if key is not None]
    for url in (settings.database_url, settings.redis_url, settings.rabbitmq_url):
        if url:
            found += _url_passwords(url)
    # Longest first, so a secret that contains another is replaced whole.
    return tuple(sorted({s for s in found if len(s) >= _MIN_KNOWN_SECRET}, key=len, reverse=True))


def _url_passwords(url: str) -> list[str]:
    """The password of a URL (as written, percent-encoded, and as the driver uses it) or of a `key=value`
    connection string."""
    try:
        password = urlsplit(url).password if "://" in url else conninfo_to_dict(url).get("password")
    except (ValueError, psycopg.ProgrammingError):
        return []
    return [str(password), unquote(str(password))] if password else []


def redact_value(value: Any) -> Any:
    """Scrub a value (strings, and the strings inside dicts, lists and tuples) of secrets."""
    if isinstance(value, str):
        for secret in _known_secrets:
            value = value.replace(secret, REDACTED)
        return _SECRET_VALUES.sub(REDACTED, value)
    if isinstance(value, dict):
        return _redact_mapping(dict(value))
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item) for item in value)
    return value


def _redact_mapping(event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if isinstance(key, str) and _SECRET_KEYS.search(key) and isinstance(value, (str, bytes, SecretStr)):
            event[key] = REDACTED
        else:
            event[key] = redact_value(value)
    return event


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: drop string values of secret-named fields (a count such as `tokens=12` stays) and scrub
    key-shaped strings and the configured secrets from all others, nested ones included."""
    return _redact_mapping(event)


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of writing, not the stream it was at configuration:
    a test runner (or Dramatiq's worker processes) swap it, and a closed old stream must never be used.

    structlog's lines and the standard library's reach it from many threads: each comes as one write, made
    under one lock, so no line is ever spliced into another (a JSON line cut in two is lost to a shipper)."""

    _lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
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
    global _known_secrets
    _known_secrets = configured_secrets(settings)
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
        wrapper_class=structlog.make_filtering_bound_logger(
            level if isinstance(level, int) else logging.INFO
        ),
        # WriteLogger writes a line and its newline at once (PrintLogger's print() makes two writes).
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    if not stdlib:
        logging.basicConfig(
            level=logging.WARNING, handlers=[handler], format="%(levelname)s %(name)s: %(message)s"
        )
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

"""Logging: one format for terminals and journald, secrets redacted from every record."""

from __future__ import annotations

import logging
import re
import sys

_secrets: set[str] = set()
_QUERY = re.compile(r"(https?://[^\s?]+)\?[^\s\"']*")


def register_secret(value: str) -> None:
    """Never print this value (a password, a token) in any log line."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact_text(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return _QUERY.sub(r"\1?…", text)


_SYSLOG = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.syslog_level = _SYSLOG.get(record.levelno, 6)
        return redact_text(super().format(record))


def setup_logging(level: str = "INFO", journald: bool | None = None) -> None:
    if journald is None:
        journald = not sys.stderr.isatty() and "JOURNAL_STREAM" in __import__("os").environ
    fmt = "<%(syslog_level)s>%(name)s: %(message)s" if journald else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        for noisy in ("httpx", "httpcore", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

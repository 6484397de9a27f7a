"""Quiet, structured logging that never carries a SAS signature or a secret."""

from __future__ import annotations

import logging
import re
from typing import Any

_SIG = re.compile(r"(?i)(sig=)[^&\s\"']+")
_KEY = re.compile(r"(?i)(AccountKey=|SharedAccessSignature=|client_secret=|[?&]code=)[^;&\s\"']+")
_installed = False


def redact(text: str) -> str:
    """Blank SAS signatures, connection-string keys and function keys sent as `?code=` inside a log message."""
    return _KEY.sub(r"\1REDACTED", _SIG.sub(r"\1REDACTED", text))


def install_redaction() -> None:
    """Redact every log record as it is created, whichever library logs it (urllib3 logs full URLs).

    A record factory, unlike a filter, also covers records of child loggers and of handlers added
    later (the Functions host's, pytest's).
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.args, tuple):  # keep the arguments' shape: uvicorn's access formatter unpacks them
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def configure_logging(level: str = "INFO") -> None:
    install_redaction()
    logging.getLogger("shared").setLevel(level)
    # The SDK and urllib3 log every request; keep them to warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def log_event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One greppable line: `message key=value ...`, with the same fields as structured `extra`."""
    text = message + "".join(f" {key}={value}" for key, value in fields.items())
    logger.log(level, text, extra={"event": message, **{f"ctx_{k}": v for k, v in fields.items()}})

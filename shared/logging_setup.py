"""Quiet, structured logging that never carries a SAS signature or a secret."""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

_SIG = re.compile(r"(?i)(sig=|sig%3D)[^&\s\"']+")
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
        _redact_traceback(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def _redact_traceback(record: logging.LogRecord) -> None:
    """Format a record's traceback now, redacted, and drop the live exception: a traceback repeats the
    exception's message, which can hold a request URL with its SAS signature, and a handler (the Functions
    host's, OpenTelemetry's) would otherwise format it again from `exc_info`, unredacted. Formatters print
    `exc_text` when it is set, with or without `exc_info`."""
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def configure_logging(level: str = "INFO") -> None:
    install_redaction()
    logging.getLogger("shared").setLevel(level)
    # The SDK and urllib3 log every request; keep them to warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def log_event(logger: logging.Logger, message: str, level: int = logging.INFO, *,
              exc_info: BaseException | None = None, **fields: Any) -> None:
    """One greppable line: `message key=value ...`, with the same fields as structured `extra`.

    `exc_info`: an unexpected exception whose traceback follows the line (redacted, as the line is).
    """
    text = message + "".join(f" {key}={value}" for key, value in fields.items())
    logger.log(level, text, exc_info=exc_info,
               extra={"event": message, **{f"ctx_{k}": v for k, v in fields.items()}})

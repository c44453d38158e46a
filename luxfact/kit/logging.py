"""Structured logs: one JSON object per line, carrying the request's context.

Patient identifiers never reach a log line: `redact` masks anything shaped like a matricule,
and the request log records the route template, not the concrete path.
"""

import json
import logging
import re
import sys
from typing import Any

from luxfact.kit import context
from luxfact.kit.time import utcnow

# 11 to 13 digits in a row: the national identifier (current or legacy form).
_MATRICULE = re.compile(r"(?<!\d)(\d{4})\d{7,9}(?!\d)")


def redact(text: str) -> str:
    return _MATRICULE.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 4), text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        info = context.current()
        entry: dict[str, Any] = {
            "ts": utcnow().isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "request_id": info.request_id,
        }
        if info.tenant_slug:
            entry["tenant"] = info.tenant_slug
        if info.actor:
            entry["user"] = info.actor
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate ours, without the context.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO: a webhook's URL may carry its receiver's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True

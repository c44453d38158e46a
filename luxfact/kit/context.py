"""Per-request context: who is asking, for which hospital, under which request id.

One mutable `RequestInfo` per request lives in a context variable set by the outermost
middleware; inner layers fill it in (authentication sets tenant and actor). The database hook
reads the tenant from here, the log line and the audit trail read the rest.
"""

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestInfo:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tenant_id: uuid.UUID | None = None
    tenant_slug: str | None = None
    actor: str | None = None  # "user:<id>" or "key:<id>"
    route: str | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("luxfact_request", default=None)


def current() -> RequestInfo:
    """The request's context; outside a request (CLI, jobs) a fresh one is installed."""
    info = _current.get()
    if info is None:
        info = RequestInfo()
        _current.set(info)
    return info


def install(info: RequestInfo) -> object:
    return _current.set(info)


def reset(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def current_tenant_id() -> uuid.UUID | None:
    info = _current.get()
    return info.tenant_id if info else None


class tenant_scope:
    """Run a block as one tenant (CLI commands, jobs, tests), restoring the previous one."""

    def __init__(self, tenant_id: uuid.UUID | None, actor: str | None = None) -> None:
        self.tenant_id = tenant_id
        self.actor = actor
        self._saved: tuple[uuid.UUID | None, str | None] | None = None

    def __enter__(self) -> RequestInfo:
        info = current()
        self._saved = (info.tenant_id, info.actor)
        info.tenant_id = self.tenant_id
        if self.actor is not None:
            info.actor = self.actor
        return info

    def __exit__(self, *exc: object) -> None:
        info = current()
        assert self._saved is not None
        info.tenant_id, info.actor = self._saved

"""RFC 9457 problem details: the shape of every error response."""

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from luxfact.kit import context
from luxfact.kit.errors import LuxfactError

PROBLEM_TYPE_BASE = "https://luxfact.lu/problems/"
MEDIA_TYPE = "application/problem+json"


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body["request_id"] = context.current().request_id
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def from_error(error: LuxfactError, instance: str | None = None) -> ProblemResponse:
    return problem(
        error.status,
        error.code,
        error.title,
        error.detail,
        instance=instance,
        errors=error.errors,
        headers=error.headers,
        **error.extra,
    )


def reason(message: str) -> str:
    """Pydantic's message without its "Value error, " prefix: the reason as a person reads it."""
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic's errors as `{"field": "a.b", "reason": "..."}`, one per field problem."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"] if p != "__root__")
        message = reason(err["msg"])
        if err["type"] == "extra_forbidden":
            # Pydantic's "Extra inputs are not permitted" does not say what the input was.
            message = ("not a parameter of this endpoint" if prefix == "query."
                       else "not a field of this request")
        out.append({"field": prefix + path if path else prefix.rstrip(".") or "body",
                    "reason": message})
    return out

"""The one error hierarchy: every error a user or a partner system can cause has a status.

Rendered as RFC 9457 problem details by `luxfact.kit.problems`. `code` is a stable slug used
in the problem's `type` URI; `errors` lists field-level reasons (`{"field", "reason"}`).
"""

from typing import Any


class LuxfactError(Exception):
    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra


class BadRequest(LuxfactError):
    pass


class Unauthenticated(LuxfactError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(LuxfactError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this role"


class NotFound(LuxfactError):
    status = 404
    code = "not-found"
    title = "Not found"


class MethodNotAllowed(LuxfactError):
    status = 405
    code = "method-not-allowed"
    title = "Method not allowed"


class Conflict(LuxfactError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PreconditionFailed(LuxfactError):
    status = 412
    code = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(LuxfactError):
    status = 413
    code = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(LuxfactError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class ValidationFailed(LuxfactError):
    status = 422
    code = "validation-failed"
    title = "Validation failed"


class PreconditionRequired(LuxfactError):
    status = 428
    code = "precondition-required"
    title = "Precondition required"


class ServiceUnavailable(LuxfactError):
    status = 503
    code = "service-unavailable"
    title = "Service unavailable"

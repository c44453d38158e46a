"""ETags for updates: the row's version. `If-Match` is required, a stale one refused."""

from starlette.requests import Request

from luxfact.kit.errors import PreconditionFailed, PreconditionRequired


def etag(version: int) -> str:
    return f'"{version}"'


def require_if_match(request: Request, version: int) -> None:
    header = request.headers.get("if-match")
    if header is None:
        raise PreconditionRequired("Send If-Match with the ETag of the version you edited.")
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    if "*" not in candidates and etag(version) not in candidates:
        raise PreconditionFailed("The record changed since you read it: reload it and "
                                 "apply your change again.", current_etag=etag(version))

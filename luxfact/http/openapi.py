"""The OpenAPI 3.1 document, made from the route table and the endpoints' declared schemas:
the same pydantic models that validate the requests describe them (one source of truth)."""

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from luxfact.http.endpoint import EndpointDoc

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"{(\w+)}")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
    },
    "additionalProperties": True,
}

ERRORS = {
    "400": "The body is not valid JSON or UTF-8.",
    "401": "No valid credentials.",
    "403": "This role may not do this.",
    "404": "Not found (or another hospital's: existence is never revealed).",
    "409": "Conflicts with the current state.",
    "413": "The body is too large.",
    "415": "The body is not JSON.",
    "422": "Validation failed; `errors` names each field.",
    "503": "The database cannot be reached, or its disk is full; nothing was changed. "
           "Retry after the Retry-After seconds.",
}


def _problem_responses(doc: EndpointDoc, method: str) -> dict[str, Any]:
    codes = ["401", "403", "404", "409", "422", "503"]
    if doc.body is not None or doc.raw_body is not None:
        codes += ["400", "413", "415"]
    if method == "patch" and doc.etag:
        codes += ["412", "428"]
    out = {}
    for code in sorted(codes):
        description = ERRORS.get(code) or {"412": "If-Match does not match: the record changed.",
                                           "428": "If-Match is required."}[code]
        out[code] = {"description": description, "content": {
            "application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}}
    return out


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()]


def _operation(route: Route, method: str, doc: EndpointDoc) -> dict[str, Any]:
    endpoint = route.endpoint
    summary, _, description = (endpoint.__doc__ or endpoint.__name__).strip().partition("\n")
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "format": "uuid"} if name.endswith("_id")
         else {"type": "string", "maxLength": 40}}
        for name in _PARAM.findall(route.path)]
    if doc.query is not None:
        parameters += _query_parameters(doc.query)
    if doc.idempotent:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                           "description": "Retries with the same key and body get the first "
                           "response; the same key with another body is a 422."})
    if method == "patch" and doc.etag:
        parameters.append({"name": "If-Match", "in": "header", "required": True,
                           "schema": {"type": "string"},
                           "description": "The ETag of the version being changed."})
    success: dict[str, Any] = {"description": {200: "OK", 204: "Done"}.get(doc.status, "Created")}
    if doc.response is not None:
        success["content"] = {"application/json": {
            "schema": {"$ref": REF.format(model=_name(doc.response))}}}
    operation: dict[str, Any] = {
        "operationId": endpoint.__name__,
        "summary": summary,
        "tags": [route.path.split("/")[3] if route.path.startswith("/api/v1/") else "ops"],
        "parameters": parameters,
        "responses": {str(doc.status): success,
                      **{str(code): {**success, "description": description}
                         for code, description in doc.also},
                      **_problem_responses(doc, method)},
        "security": [{"apiKey": []}],
        "x-roles": sorted(r.value for r in doc.roles),
    }
    if description.strip():
        operation["description"] = description.strip()
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model=_name(doc.body))}}}}
    if doc.raw_body is not None:
        operation["requestBody"] = {"required": True, "content": {doc.raw_body: {
            "schema": {"type": "string"}}}}
    return operation


def _name(model: type[BaseModel]) -> str:
    return model.__name__.replace("[", "_").replace("]", "").replace(",", "_")


def documented(routes: list[BaseRoute]) -> list[tuple[Route, str, EndpointDoc]]:
    out = []
    for route in routes:
        doc = getattr(getattr(route, "endpoint", None), "doc", None)
        if isinstance(route, Route) and isinstance(doc, EndpointDoc):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    out.append((route, method.lower(), doc))
    return out


def build(routes: list[BaseRoute]) -> dict[str, Any]:
    operations = documented(routes)
    models: dict[str, type[BaseModel]] = {}
    for _, _, doc in operations:
        for model in (doc.body, doc.response):
            if model is not None:
                models[_name(model)] = model
    modes = [(m, "validation" if any(d.body is m for _, _, d in operations) else "serialization")
             for m in models.values()]
    _, schemas = models_json_schema(modes, ref_template=REF)  # type: ignore[arg-type]
    components = dict(schemas.get("$defs", {}))
    components["Problem"] = PROBLEM_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for route, method, doc in operations:
        paths.setdefault(route.path, {})[method] = _operation(route, method, doc)
    for path, summary in (("/healthz", "The process is alive."),
                          ("/readyz", "The database answers and the schema is at head.")):
        paths[path] = {"get": {"operationId": path.strip("/"), "summary": summary,
                               "tags": ["ops"], "security": [], "responses": {
                                   "200": {"description": "OK", "content": {"application/json": {
                                       "schema": {"type": "object"}}}},
                                   "503": {"description": "Not ready", "content": {
                                       "application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Luxfact API", "version": "1",
                 "description": "Patient admission and billing for Luxembourg's hospitals. "
                 "See docs/api.md for authentication, errors, pagination and idempotency."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "An API key of one hospital: "
                                           "`Authorization: Bearer lfx_…`"}},
        },
    }

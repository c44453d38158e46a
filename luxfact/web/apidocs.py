"""The API's OpenAPI document and its readable reference page, both served by the app."""

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from luxfact.http import openapi

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(), trim_blocks=True, lstrip_blocks=True)


def _document(request: Request) -> dict[str, Any]:
    doc = getattr(request.app.state, "openapi", None)
    if doc is None:
        # Built once per process: the routes do not change while it runs.
        doc = request.app.state.openapi = openapi.build(request.app.routes)
    return doc


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(_document(request))


def _schema_name(ref: dict[str, Any] | None) -> str | None:
    if not ref:
        return None
    return ref.get("$ref", "").rsplit("/", 1)[-1] or None


async def reference(request: Request) -> HTMLResponse:
    doc = _document(request)
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ok = next((r for code, r in op["responses"].items() if code.startswith("2")), {})
            result = ok.get("content", {}).get("application/json", {})
            groups.setdefault(op["tags"][0], []).append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "roles": op.get("x-roles", []), "parameters": op.get("parameters", []),
                "body": _schema_name(body.get("schema")),
                "status": next((c for c in op["responses"] if c.startswith("2")), ""),
                "result": _schema_name(result.get("schema")),
                "errors": [c for c in op["responses"] if not c.startswith("2")],
            })
    html = TEMPLATES.get_template("api_reference.html").render(
        info=doc["info"], groups=groups, schemas=doc["components"]["schemas"])
    return HTMLResponse(html)

"""The desk's clerk pages (being written)."""

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []

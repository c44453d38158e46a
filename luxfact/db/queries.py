"""Query helpers shared by the repositories."""

from typing import Any

from sqlalchemy import Select, select


def fresh(model: Any) -> Select[Any]:
    """A SELECT whose rows replace what the session holds: repositories write with Core
    statements, which bypass the session's identity map."""
    return select(model).execution_options(populate_existing=True)

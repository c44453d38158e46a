"""The route table: every URL the service answers, in one place."""

from starlette.routing import BaseRoute, Route

from luxfact.audit import api as audit_api
from luxfact.auth import api as auth_api
from luxfact.health import api as health_api
from luxfact.tariffs import api as tariffs_api

API = "/api/v1"


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", health_api.healthz, methods=["GET"]),
        Route("/readyz", health_api.readyz, methods=["GET"]),
        Route(f"{API}/audit-events", audit_api.list_audit_events, methods=["GET"]),
        Route(f"{API}/api-keys", auth_api.list_api_keys, methods=["GET"]),
        Route(f"{API}/api-keys", auth_api.create_api_key, methods=["POST"]),
        Route(f"{API}/api-keys/{{key_id}}/revoke", auth_api.revoke_api_key, methods=["POST"]),
        Route(f"{API}/users", auth_api.list_users, methods=["GET"]),
        Route(f"{API}/users", auth_api.create_user, methods=["POST"]),
        Route(f"{API}/tariffs/acts", tariffs_api.search_acts, methods=["GET"]),
        Route(f"{API}/tariffs/acts/{{code}}", tariffs_api.get_act, methods=["GET"]),
    ]

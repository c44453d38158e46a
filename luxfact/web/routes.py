"""The desk's URLs (HTML pages), beside the API's in `luxfact/routes.py`."""

from starlette.routing import BaseRoute, Route

from luxfact.web import account, admin, billing, clerk


def desk_routes() -> list[BaseRoute]:
    return [
        Route("/", account.root, methods=["GET"]),
        Route("/login", account.login_form, methods=["GET"]),
        Route("/login", account.login, methods=["POST"]),
        Route("/logout", account.logout, methods=["POST"]),
        Route("/language", account.choose_language, methods=["POST"]),
        Route("/desk", account.home, methods=["GET"]),
        *clerk.routes(),
        *billing.routes(),
        *admin.routes(),
    ]

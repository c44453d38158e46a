"""What every desk page shares: the session, the roles, the form token, the hospital.

`@page(*roles)` wraps a handler `async def handler(desk: Desk) -> Response`: it reads and
renews the session cookie (or sends to the login page, keeping what was typed in a form),
checks the role, checks the form token of every POST, sets the hospital for the database
(row-level security) and the audit trail, runs the handler in one transaction, and turns
the service's errors into pages in the user's language.
"""

import dataclasses
import functools
import hashlib
import hmac
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from luxfact.auth.repository import AuthRepository
from luxfact.http import idempotency
from luxfact.kit import context
from luxfact.kit.errors import Conflict, LuxfactError, NotFound, ValidationFailed
from luxfact.web import i18n
from luxfact.web import session as web_session
from luxfact.web.i18n import N_

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LOADER = FileSystemLoader(TEMPLATES_DIR)

Handler = Callable[["Desk"], Awaitable[Response]]
RESUME = "desk-resume"
# Security headers of every page (CSP: scripts and styles from the app only, nothing inline).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'self'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# pydantic's reasons (English, with values in them), for every form of the desk.
SCHEMA_REASONS = tuple((re.compile(pattern), text) for pattern, text in (
    (r"String should have at most (?P<count>\d+) characters?",
     N_("at most %(count)s characters")),
    (r"String should have at least 1 character", N_("Required.")),
    (r"String should have at least (?P<count>\d+) characters",
     N_("at least %(count)s characters")),
    (r"String should match pattern .*", N_("not in the expected form")),
    (r"Input should be (?:'[^']*', )*'[^']*' or '[^']*'", N_("choose one of the options")),
    (r"Input should be '[^']*'", N_("choose one of the options")),
    (r"Input should be a valid integer.*", N_("a whole number")),
    (r"Input should be greater than or equal to (?P<count>\d+)",
     N_("at least %(count)s")),
    (r"Input should be less than or equal to (?P<count>\d+)", N_("at most %(count)s")),
    (r"List should have at most (?P<count>\d+) items?.*", N_("at most %(count)s")),
    (r"Input should be a valid (?:date|datetime)\b.*", N_("not a valid date")),
    (r"Input should have timezone info", N_("not a valid date and time")),
    (r"the year must be between (?P<low>\d+) and (?P<high>\d+)",
     N_("the year must be between %(low)s and %(high)s")),
))

# Each role's pages, in the header and on its home page.
NAV = {
    "clerk": [("/desk/patients", N_("Patients")),
              ("/desk/stays", N_("Stays in the house"))],
    "billing": [("/desk/billing", N_("Stays ready to bill")),
                ("/desk/invoices", N_("Invoices")),
                ("/desk/claims", N_("Claim batches")),
                ("/desk/claim-lines", N_("Rejected lines")),
                ("/desk/dashboard", N_("Dashboard"))],
    "admin": [("/desk/admin/users", N_("Users")),
              ("/desk/admin/keys", N_("API keys")),
              ("/desk/admin/audit", N_("Audit log")),
              ("/desk/admin/hospital", N_("Hospital settings")),
              ("/desk/admin/tariffs", N_("Tariff import"))],
}


@functools.cache  # one per language, for the life of the process
def environment(language: str) -> Environment:
    """The templates in one language, each compiled once (an overlay per render would start
    with an empty template cache and compile every template again: 40-70 ms a page)."""
    # Its own Environment, not an overlay: an overlay shares its parent's globals, where
    # the i18n extension puts gettext, so the last language installed would win everywhere.
    env = Environment(loader=LOADER, autoescape=select_autoescape(), trim_blocks=True,
                      lstrip_blocks=True, extensions=["jinja2.ext.i18n"], cache_size=400)
    env.install_gettext_translations(i18n.translations(language),  # type: ignore[attr-defined]
                                     newstyle=True)
    return env


def render(request: Request, template: str, user: web_session.WebSession | None,
           language: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = environment(language).get_template(template).render(
        request=request, user=user, lang=language, languages=i18n.NAMES,
        csrf=user.csrf if user else "", path=request.url.path,
        nav_links=NAV.get(user.role, []) if user else [], **values)
    response = HTMLResponse(html, status_code=status)
    _secure(request, response)
    return response


def _secure(request: Request, response: Response) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.state.settings.environment != "development":  # plain http on a laptop
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"


def cookie_secure(request: Request) -> bool:
    return request.state.settings.environment != "development"


def set_session_cookie(request: Request, response: Response,
                       user: web_session.WebSession) -> None:
    response.set_cookie(web_session.COOKIE, web_session.encode(
        request.state.settings.secret_key, user), max_age=web_session.ABSOLUTE_SECONDS,
        httponly=True, samesite="strict", secure=cookie_secure(request), path="/")


def request_language(request: Request) -> str:
    chosen = request.cookies.get("luxfact_lang")
    if chosen in i18n.LANGUAGES:
        return chosen  # type: ignore[return-value]
    return i18n.negotiate(request.headers.get("accept-language"))


@dataclass
class Desk:
    request: Request
    session: AsyncSession
    user: web_session.WebSession
    form: FormData | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.user.tenant_uuid

    @property
    def language(self) -> str:
        return self.user.language

    def _(self, text: str, **values: Any) -> str:
        translated = i18n.translations(self.language).gettext(text)
        return translated % values if values else translated

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render(self.request, template, self.user, self.language, status,
                      errors=self.errors, **values)

    def redirect(self, url: str) -> Response:
        """After a successful POST: see the result (303). htmx follows its own header."""
        if self.request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    def value(self, name: str, default: str = "") -> str:
        """A field of the posted form (or of a form restored after a new login)."""
        if self.form is not None:
            found = self.form.get(name)
            return found if isinstance(found, str) else default
        restored = resumed(self.request)
        return restored.get(name, default) if restored else default

    def field_errors(self, error: ValidationFailed, prefix: str = "") -> dict[str, str]:
        """The service's field errors, by form field, in the user's language."""
        for item in error.errors or [{"field": "", "reason": error.detail}]:
            name = str(item.get("field", "")).removeprefix(prefix).removeprefix("body.")
            self.errors.setdefault(name or "_form", self.translate_reason(
                str(item.get("reason", ""))))
        return self.errors

    def translate_reason(self, reason: str) -> str:
        """A reason of a service or of a schema (English) in the user's language: as a text
        of the catalogues, or as one of the schemas' reasons with values in them."""
        translations = i18n.translations(self.language)
        translated = translations.gettext(reason)
        if translated != reason:
            return translated
        for pattern, text in SCHEMA_REASONS:
            found = pattern.fullmatch(reason)
            if found:
                return translations.gettext(text) % found.groupdict()
        return reason

    async def once(self, make: Callable[[], Awaitable[str]]) -> Response:
        """Run a creating form once per `idem` key: a double submit (or a retry after a lost
        answer) goes where the first one went instead of creating a second record."""
        key = self.value("idem")
        if not key or len(key) > 100:
            return self.redirect(await make())
        print_ = hashlib.sha256(self.request.url.path.encode()).hexdigest()
        stored = await idempotency.stored(self.session, self.tenant_id, self.user.actor,
                                          f"desk:{key}", print_)
        if stored is not None:
            return self.redirect(stored.headers.get("location", "/desk"))
        try:
            url = await make()
        except IntegrityError as error:
            # The record collided with its twin's (a unique matricule), committed meanwhile
            # with this key: go where the twin went. Without the key, a real conflict.
            raise DuplicateSubmit(f"desk:{key}", print_, error) from None
        try:
            async with self.session.begin_nested():
                await idempotency.store(self.session, self.tenant_id, self.user.actor,
                                        f"desk:{key}", print_, Response(
                                            b"", status_code=303, headers={"Location": url}))
        except IntegrityError:
            # The same form sent twice at the same instant: the other one stored first.
            # This whole transaction rolls back; the page follows where the other went.
            raise DuplicateSubmit(f"desk:{key}", print_) from None
        return self.redirect(url)


class DuplicateSubmit(Exception):
    def __init__(self, key: str, print_: str, cause: IntegrityError | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.print_ = print_
        self.cause = cause  # re-raised when no twin stored the key: a 409 as before


def resumed(request: Request) -> dict[str, str] | None:
    """What was typed in a form when the session expired, handed back after login."""
    token = request.query_params.get("resume")
    payload = web_session.unsign(request.state.settings.secret_key, token, RESUME)
    if payload is None or payload.get("url") != request.url.path:
        return None
    fields = payload.get("fields")
    return {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else None


def error_page(request: Request, user: web_session.WebSession | None, status: int,
               message: str) -> HTMLResponse:
    language = user.language if user else request_language(request)
    return render(request, "desk/error.html", user, language, status, status_code=status,
                  message=message)


def page(*roles: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    allowed = frozenset(str(role) for role in roles)

    def decorate(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            settings = request.state.settings
            user = web_session.decode(settings.secret_key,
                                      request.cookies.get(web_session.COOKIE))
            form = await request.form() if request.method == "POST" else None
            if user is None:
                return await _to_login(request, form)
            if form is not None:
                token = form.get("csrf") or request.headers.get("x-csrf-token", "")
                if not isinstance(token, str) or not _same(token, user.csrf):
                    return error_page(request, user, 403, i18n.translations(user.language)
                                      .gettext("This form has expired or was not sent by "
                                               "the desk. Reload the page and try again."))
            info = context.current()
            info.tenant_id, info.actor = user.tenant_uuid, user.actor
            info.tenant_slug = user.tenant_slug
            try:
                async with request.state.db.transaction() as session:
                    found = await AuthRepository(session, user.tenant_uuid).user(
                        uuid.UUID(user.user_id))
                    if found is None or found.disabled:
                        response: Response = RedirectResponse("/login", status_code=303)
                        response.delete_cookie(web_session.COOKIE, path="/")
                        return response
                    if found.role != user.role:
                        # An administrator changed the role: it holds from this request on.
                        user = dataclasses.replace(user, role=found.role)
                    if allowed and user.role not in allowed:
                        response = error_page(request, user, 403, i18n.translations(
                            user.language).gettext("Your role may not open this page."))
                    else:
                        response = await handler(Desk(request, session, user, form))
            except DuplicateSubmit as duplicate:
                async with request.state.db.transaction() as session:
                    first = await idempotency.stored(session, user.tenant_uuid, user.actor,
                                                     duplicate.key, duplicate.print_)
                if first is None and duplicate.cause is not None:
                    raise duplicate.cause from None
                location = first.headers.get("location", "/desk") if first else "/desk"
                if request.headers.get("hx-request"):
                    return Response(status_code=204, headers={"HX-Redirect": location})
                return RedirectResponse(location, status_code=303)
            except NotFound:
                return error_page(request, user, 404, i18n.translations(user.language)
                                  .gettext("Nothing here: it does not exist, or not in "
                                           "your hospital."))
            except (Conflict, ValidationFailed, LuxfactError) as error:
                return error_page(request, user, error.status,
                                  i18n.translations(user.language).gettext(error.detail))
            # Renewed on every request (the idle timeout slides), unless the handler set
            # it itself (logging out clears it).
            cookie = f"{web_session.COOKIE}=".encode()
            if not any(name == b"set-cookie" and value.startswith(cookie)
                       for name, value in response.raw_headers):
                set_session_cookie(request, response, user.renewed())
            _secure(request, response)
            return response

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        run.roles = allowed  # type: ignore[attr-defined]
        run.desk = True  # type: ignore[attr-defined]
        return run

    return decorate


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _to_login(request: Request, form: FormData | None) -> Response:
    """No (or an expired) session: to the login page. A form being sent is kept, signed,
    and comes back filled once the user has logged in again."""
    target = request.url.path
    if form is None:
        login = f"/login?next={quote(target)}"
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": login})
        return RedirectResponse(login, status_code=303)
    fields = {key: value for key, value in form.multi_items()
              if isinstance(value, str) and key not in ("csrf", "password")}
    token = web_session.sign(request.state.settings.secret_key,
                             {"url": target, "fields": fields}, RESUME)
    language = request_language(request)
    return render(request, "desk/login.html", None, language, 401, next=target, resume=token,
                  expired=True, slugs=await _slugs(request), email="", slug="")


async def _slugs(request: Request) -> list[tuple[str, str]]:
    from luxfact.tenancy.repository import TenantRepository
    async with request.state.db.transaction() as session:
        return [(t.slug, t.legal_name) for t in await TenantRepository(session).all()
                if t.active]

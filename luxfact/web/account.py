"""Logging in and out, the language switch, and each role's home page."""

import asyncio
import functools
import secrets
import uuid
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from luxfact.audit.service import record
from luxfact.auth.credentials import hash_password, verify_password
from luxfact.auth.repository import AuthRepository
from luxfact.kit import context
from luxfact.kit.time import utcnow
from luxfact.tenancy.repository import TenantRepository
from luxfact.web import i18n
from luxfact.web import session as web_session
from luxfact.web.desk import (
    NAV,
    Desk,
    _slugs,
    error_page,
    page,
    render,
    request_language,
    set_session_cookie,
)
from luxfact.web.throttle import LoginThrottle

THROTTLE = LoginThrottle()


@functools.cache
def _dummy_hash() -> str:
    """A password check against no user takes as long as against one: no telling who
    exists."""
    return hash_password(secrets.token_urlsafe(16))


def _safe_next(target: str | None) -> str:
    """Only a path of this site: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/desk"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def login_form(request: Request) -> Response:
    language = request_language(request)
    return render(request, "desk/login.html", None, language,
                  next=_safe_next(request.query_params.get("next")), resume="",
                  expired=False, slugs=await _slugs(request), email="",
                  slug=request.cookies.get("luxfact_hospital", ""))


def _cross_site(request: Request) -> bool:
    """A login posted from another site's page (login CSRF: someone else's account slipped
    into the clerk's browser).

    The browser's own verdict first: `Sec-Fetch-Site`, which every current browser sends
    and which no proxy in between can make wrong. Without it (an old browser), the `Origin`
    host must be the host the browser addressed: `X-Forwarded-Host` when a reverse proxy
    says so, else `Host` (docs/security.md: a proxy must pass one of them through). A
    request with neither header (a script) is judged by its credentials alone.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    addressed = (request.headers.get("x-forwarded-host", "").split(",")[0].strip()
                 or request.headers.get("host", ""))
    return _host(origin) != _host(addressed)


def _host(value: str) -> str:
    """host[:port] as compared: lower case, without the scheme and a default port."""
    parts = urlsplit(value if "//" in value else f"//{value}")
    try:
        port = parts.port if parts.port not in (None, 80, 443) else None
    except ValueError:  # a port that is not a number: compared as written
        return value.lower()
    host = (parts.hostname or "").lower()
    return f"{host}:{port}" if port else host


async def login(request: Request) -> Response:
    form = await request.form()
    language = request_language(request)
    slug = str(form.get("hospital", "")).strip()
    email = str(form.get("email", "")).strip().lower()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    resume = str(form.get("resume", ""))
    client = request.client.host if request.client else "?"
    keys = [f"account:{slug}:{email}", f"address:{client}"]
    translate = i18n.translations(language).gettext

    def again(status: int, message: str) -> Response:
        return render(request, "desk/login.html", None, language, status, next=target,
                      resume=resume, expired=False, slugs=slugs, email=email, slug=slug,
                      error=message)

    slugs = await _slugs(request)
    if _cross_site(request):
        return again(403, translate("This login form was sent from another site. Open "
                                    "Luxfact's own login page and try again."))
    wait = THROTTLE.wait_seconds(keys)
    if wait:
        return again(429, translate("Too many failed attempts. Try again in %(minutes)s "
                                    "minutes.") % {"minutes": max(1, (wait + 59) // 60)})
    db = request.state.db
    async with db.transaction() as session:
        tenant = await TenantRepository(session).by_slug(slug) if slug else None
    user = None
    if tenant is not None and tenant.active:
        with context.tenant_scope(tenant.id):
            async with db.transaction() as session:
                user = await AuthRepository(session, tenant.id).user_by_email(email)
    valid = await asyncio.to_thread(verify_password, user.password_hash if user else
                                    _dummy_hash(), password)
    if tenant is None or user is None or user.disabled or not valid:
        THROTTLE.failed(keys)
        return again(401, translate("The hospital, e-mail or password is not right."))
    THROTTLE.succeeded(keys)
    with context.tenant_scope(tenant.id, actor=f"user:{user.id}"):
        async with db.transaction() as session:
            await AuthRepository(session, tenant.id).mark_login(user.id, utcnow())
            await record(session, "user.login", "user", user.id, {"via": "desk"},
                         tenant_id=tenant.id)
    chosen = request.cookies.get("luxfact_lang")
    desk_user = web_session.new_session(
        user_id=user.id, tenant_id=tenant.id, tenant_slug=tenant.slug, role=user.role,
        name=user.display_name or user.email,
        language=chosen if chosen in i18n.LANGUAGES else user.language)
    destination = target
    if resume:
        destination = f"{target}{'&' if '?' in target else '?'}resume={resume}"
    response = RedirectResponse(destination, status_code=303)
    set_session_cookie(request, response, desk_user)
    response.set_cookie("luxfact_hospital", tenant.slug, max_age=365 * 86400, httponly=True,
                        samesite="strict", path="/login")
    return response


@page()
async def logout(desk: Desk) -> Response:
    await record(desk.session, "user.logout", "user", desk.user.user_id, {},
                 tenant_id=desk.tenant_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_session.COOKIE, path="/")
    return response


async def choose_language(request: Request) -> Response:
    """The language switch: remembered in a cookie, and on the user when logged in."""
    form = await request.form()
    language = str(form.get("language", ""))
    back = _safe_next(str(form.get("next", "")))
    if language not in i18n.LANGUAGES:
        return error_page(request, None, 422, "Unknown language.")
    user = web_session.decode(request.state.settings.secret_key,
                              request.cookies.get(web_session.COOKIE))
    if user is not None:
        token = form.get("csrf") or ""
        if not isinstance(token, str) or token != user.csrf:
            return error_page(request, user, 403, i18n.translations(user.language).gettext(
                "This form has expired or was not sent by the desk. Reload the page and "
                "try again."))
    response = RedirectResponse(back, status_code=303)
    response.set_cookie("luxfact_lang", language, max_age=365 * 86400, httponly=True,
                        samesite="strict", path="/")
    if user is not None:
        with context.tenant_scope(user.tenant_uuid, actor=user.actor):
            async with request.state.db.transaction() as session:
                await AuthRepository(session, user.tenant_uuid).set_language(
                    uuid.UUID(user.user_id), language)
        set_session_cookie(request, response, user.with_language(language).renewed())
    return response


@page()
async def home(desk: Desk) -> Response:
    return desk.render("desk/home.html", links=NAV.get(desk.user.role, []))


async def root(request: Request) -> Response:
    return RedirectResponse("/desk", status_code=303)

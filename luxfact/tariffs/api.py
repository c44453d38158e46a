"""The catalogue for every role: a code's price on a date, and search for autocomplete."""

from datetime import date, datetime

from starlette.responses import Response

from luxfact.auth.roles import ALL_ROLES
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.kit.errors import NotFound
from luxfact.kit.time import LUXEMBOURG
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs import service
from luxfact.tariffs.schemas import ActPrice, ActQuery, ActSearchQuery, ActSearchResult


def _today() -> date:
    return datetime.now(LUXEMBOURG).date()


def act_price(snapshot: cat.TariffSnapshot, act: cat.ActVersion, day: date) -> ActPrice:
    value, cote, row = snapshot.key_letter_value(act.key_letter, day)
    return ActPrice(
        code=act.code, nomenclature=act.nomenclature, category=snapshot.category(act),
        label_fr=act.label_fr, label_de=act.label_de, coefficient=act.coefficient,
        key_letter=act.key_letter, key_letter_value=value, key_letter_basis=row.basis,
        cote=cote, unit_price=cat.unit_price(act.coefficient, value), date=day,
        version=act.version_id, valid_from=act.valid_from, valid_to=act.valid_to,
    )


@endpoint(*ALL_ROLES, query=ActQuery, response=ActPrice)
async def get_act(ctx: Ctx) -> Response:
    """An act's tariff and unit price on a date."""
    query = ctx.query(ActQuery)
    day = query.date or _today()
    snapshot = await service.snapshot(ctx.session, ctx.tenant_id)
    # Codes are upper case, and recording an act accepts one typed in lower case: so does this.
    code = ctx.request.path_params["code"].strip().upper()
    try:
        act = snapshot.act(code, day)
        return json_response(act_price(snapshot, act, day))
    except cat.UnknownCode:
        raise NotFound(f"No act {code!r} in the catalogue.") from None
    except cat.CatalogueError as exc:
        raise service.catalogue_error(exc, "query.date") from None


@endpoint(*ALL_ROLES, query=ActSearchQuery, response=ActSearchResult)
async def search_acts(ctx: Ctx) -> Response:
    """Search acts by code or label, for autocomplete."""
    query = ctx.query(ActSearchQuery)
    day = query.date or _today()
    snapshot = await service.snapshot(ctx.session, ctx.tenant_id)
    items = []
    for act in snapshot.search(query.q, day, query.limit):
        try:
            items.append(act_price(snapshot, act, day))
        except cat.CatalogueError:
            continue  # valid code but no key-letter value that day: not offered
    return json_response(ActSearchResult(items=items))

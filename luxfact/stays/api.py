"""/api/v1/stays: admissions, movements and acts."""

from datetime import datetime

from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.etag import etag, require_if_match
from luxfact.http.pagination import Page, decode_time_cursor, page
from luxfact.kit.time import LUXEMBOURG
from luxfact.patients.repository import PatientRepository
from luxfact.stays import acts as act_service
from luxfact.stays import service
from luxfact.stays.models import Movement, Stay
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import (
    ActIn,
    ActOut,
    ActPatch,
    MovementIn,
    MovementOut,
    StayIn,
    StayOut,
    StayPatch,
    StayQuery,
)

WRITERS = (Role.clerk, Role.integration)
READERS = (Role.clerk, Role.billing, Role.integration)


async def stay_response(ctx: Ctx, stay: Stay, status: int = 200,
                        movements: list[Movement] | None = None) -> Response:
    """The stay with its movements (read here unless given) and coverage gaps."""
    if movements is None:
        movements = await StayRepository(ctx.session, ctx.tenant_id).movements(stay.id)
    coverages = await PatientRepository(ctx.session, ctx.tenant_id).coverages(stay.patient_id)
    out = StayOut.model_validate(stay, from_attributes=True)
    out.movements = [MovementOut.model_validate(m, from_attributes=True) for m in movements]
    out.coverage_gaps = service.coverage_gaps(stay, coverages, datetime.now(LUXEMBOURG).date())
    return json_response(out, status, headers={"ETag": etag(stay.version)})


@endpoint(*WRITERS, idempotent=True, body=StayIn, response=StayOut, status=201, etag=True)
async def create_stay(ctx: Ctx) -> Response:
    """Admit a patient (or plan an admission)."""
    stay, movements = await service.admit(ctx.session, ctx.tenant_id, await ctx.body(StayIn))
    response = await stay_response(ctx, stay, 201, movements)
    response.headers["Location"] = f"/api/v1/stays/{stay.id}"
    return response


@endpoint(*READERS, query=StayQuery, response=Page[StayOut])
async def list_stays(ctx: Ctx) -> Response:
    """Stays, newest admission first."""
    query = ctx.query(StayQuery)
    stays = await StayRepository(ctx.session, ctx.tenant_id).page(
        limit=query.limit + 1, patient_id=query.patient_id, state=query.state,
        after=decode_time_cursor(query.cursor))
    return json_response(page(StayOut, stays, query.limit,
                              lambda s: [s.admitted_at.isoformat(), str(s.id)]))


@endpoint(*READERS, response=StayOut, etag=True)
async def get_stay(ctx: Ctx) -> Response:
    """A stay with its movements and coverage gaps."""
    return await stay_response(ctx, await service.get_stay(ctx.session, ctx.tenant_id,
                                                           ctx.path_uuid("stay_id")))


@endpoint(*WRITERS, body=StayPatch, response=StayOut, etag=True)
async def update_stay(ctx: Ctx) -> Response:
    """Correct a stay's kind or doctors (If-Match required). A new kind prices its acts not
    yet invoiced again; refused (409) once any part of the stay is invoiced."""
    stay = await service.get_stay(ctx.session, ctx.tenant_id, ctx.path_uuid("stay_id"),
                                  lock=True)
    require_if_match(ctx.request, stay.version)
    changed, _ = await service.change_stay(ctx.session, ctx.tenant_id, stay,
                                           await ctx.body(StayPatch))
    return await stay_response(ctx, changed)


@endpoint(*WRITERS, idempotent=True, body=MovementIn, response=StayOut, status=201)
async def add_movement(ctx: Ctx) -> Response:
    """Transfer, discharge, admit a planned stay, or cancel the latest movement."""
    data = await ctx.body(MovementIn)
    stay, _ = await service.add_movement(ctx.session, ctx.tenant_id, ctx.path_uuid("stay_id"),
                                         data)
    return await stay_response(ctx, stay, 201)


@endpoint(Role.clerk, Role.integration, idempotent=True, body=ActIn, response=ActOut,
          status=201, etag=True)
async def record_act(ctx: Ctx) -> Response:
    """Record an act on a stay; it is checked and priced at once."""
    data = await ctx.body(ActIn)
    act = await act_service.record_act(ctx.session, ctx.tenant_id, ctx.path_uuid("stay_id"),
                                       data)
    return json_response(act_service.act_out(act), 201, headers={"ETag": etag(act.version)})


@endpoint(*READERS, response=Page[ActOut])
async def list_acts(ctx: Ctx) -> Response:
    """The acts of a stay with their prices."""
    stay = await service.get_stay(ctx.session, ctx.tenant_id, ctx.path_uuid("stay_id"))
    acts = await StayRepository(ctx.session, ctx.tenant_id).acts(stay.id)
    return json_response(Page[ActOut](items=[act_service.act_out(a) for a in acts]))


@endpoint(Role.clerk, Role.integration, body=ActPatch, response=ActOut, etag=True)
async def update_act(ctx: Ctx) -> Response:
    """Correct an act not yet invoiced (If-Match required)."""
    act = await act_service.get_act(ctx.session, ctx.tenant_id, ctx.path_uuid("stay_id"),
                                    ctx.path_uuid("act_id"))
    require_if_match(ctx.request, act.version)
    updated = await act_service.update_act(ctx.session, ctx.tenant_id, act,
                                           await ctx.body(ActPatch))
    return json_response(act_service.act_out(updated), headers={"ETag": etag(updated.version)})


@endpoint(Role.clerk, Role.integration, response=ActOut)
async def cancel_act(ctx: Ctx) -> Response:
    """Cancel an act not yet invoiced."""
    act = await act_service.get_act(ctx.session, ctx.tenant_id, ctx.path_uuid("stay_id"),
                                    ctx.path_uuid("act_id"))
    cancelled = await act_service.cancel_act(ctx.session, ctx.tenant_id, act)
    return json_response(act_service.act_out(cancelled))

"""The billing dashboard: three charts drawn by the server (inline SVG, see `charts`), each
with a table of the same figures. Every figure is summed by the database (GROUP BY), never
by loading rows: billed and paid per month, the share of answered claim lines refused or cut
per anomaly code, and the open balances by days past due."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from time import monotonic as time_now
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal
from sqlalchemy import case, extract, func, select, true
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.billing import service as billing_service
from luxfact.billing.models import Invoice, Payment
from luxfact.claims import anomalies
from luxfact.claims.models import ClaimBatch, ClaimLineResult
from luxfact.kit.time import LUXEMBOURG
from luxfact.web import charts
from luxfact.web.billing import BILLING, locale_of, money, render
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

I = Invoice.__table__  # type: ignore[attr-defined]  # noqa: E741
P = Payment.__table__  # type: ignore[attr-defined]
R = ClaimLineResult.__table__  # type: ignore[attr-defined]
B = ClaimBatch.__table__  # type: ignore[attr-defined]

MONTHS = 12
BILLED, PAID, REFUSED, OPEN = "#0b5cad", "#1b6e3a", "#b00020", "#8a5a00"
# Lines the insurer did not pay whole, whatever was done about them since.
NOT_PAID_WHOLE = ("rejected", "partly_paid", "reversed", "written_off", "credited")
AGES = (("0-30", N_("0–30 days")), ("31-60", N_("31–60 days")), ("61-90", N_("61–90 days")),
        ("90+", N_("More than 90 days")))


def routes() -> list[BaseRoute]:
    return [Route("/desk/dashboard", dashboard, methods=["GET"])]


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)


def last_months(on: date, count: int = MONTHS) -> list[Month]:
    """The `count` calendar months up to `on`'s, oldest first."""
    index = on.year * 12 + on.month - 1
    return [Month(n // 12, n % 12 + 1) for n in range(index - count + 1, index + 1)]


# ------------------------------------------------------------------------------ figures
# Each query takes its own session: on PostgreSQL they run side by side, each on a
# connection and in a transaction of its own (the hospital set for row-level security).


async def billed_by_month(session: AsyncSession, tenant_id: uuid.UUID,
                          months: list[Month]) -> dict[tuple[int, int], int]:
    """The totals of the invoices issued per month (credit notes apart), in cents."""
    start = datetime.combine(months[0].first, time(), LUXEMBOURG)
    year, month = extract("year", I.c.issued_on), extract("month", I.c.issued_on)
    return {(int(row.y), int(row.m)): int(row.total) for row in (await session.execute(
        select(year.label("y"), month.label("m"), func.sum(I.c.total_cents).label("total"))
        .where(I.c.tenant_id == tenant_id, I.c.doc_type == "invoice", I.c.issued_at >= start)
        .group_by(year, month))).all()}


async def paid_by_month(session: AsyncSession, tenant_id: uuid.UUID,
                        months: list[Month]) -> dict[tuple[int, int], int]:
    """The payments recorded per month of the day paid, in cents."""
    year, month = extract("year", P.c.paid_on), extract("month", P.c.paid_on)
    return {(int(row.y), int(row.m)): int(row.total) for row in (await session.execute(
        select(year.label("y"), month.label("m"), func.sum(P.c.amount_cents).label("total"))
        .where(P.c.tenant_id == tenant_id, P.c.paid_on >= months[0].first)
        .group_by(year, month))).all()}


async def refusals(session: AsyncSession, tenant_id: uuid.UUID,
                   months: list[Month]) -> tuple[int, list[dict[str, Any]]]:
    """The claimed lines of the batches of these months that were answered, and per
    anomaly code the lines among them not paid whole that carry it (a line with two codes
    counts under each, as in the reconciliation)."""
    first = f"{months[0].year:04}-{months[0].month:02}"
    batches = (await session.execute(
        select(B.c.id, B.c.line_count).where(
            B.c.tenant_id == tenant_id, B.c.period >= first,
            B.c.state.in_(("answered", "reconciled"))))).all()
    answered = sum(int(row.line_count) for row in batches)
    if not batches:
        return 0, []
    lines = (R.c.tenant_id == tenant_id, R.c.batch_id.in_([row.id for row in batches]),
             R.c.status.in_(NOT_PAID_WHOLE), R.c.claimed_cents > R.c.paid_cents)
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        # Each line's codes made distinct within the line (LATERAL), then counted: no sort
        # of every (line, code) of the year.
        element = func.jsonb_array_elements(R.c.anomalies).table_valued("value")
        codes = (select(func.jsonb_extract_path_text(element.c.value, "code").label("code"))
                 .select_from(element).distinct().lateral("codes"))
        query = (select(codes.c.code, func.count().label("lines"),
                        func.sum(R.c.claimed_cents).label("claimed"),
                        func.sum(R.c.paid_cents).label("paid"))
                 .select_from(R.join(codes, true())).where(*lines).group_by(codes.c.code))
    else:
        # SQLite has no LATERAL: one row per line and code, made distinct, then counted.
        element = func.json_each(R.c.anomalies).table_valued("value")
        per_line = (select(R.c.invoice_id, R.c.seq,
                           func.json_extract(element.c.value, "$.code").label("code"),
                           R.c.claimed_cents, R.c.paid_cents)
                    .select_from(R.join(element, true())).where(*lines).distinct().subquery())
        query = (select(per_line.c.code, func.count().label("lines"),
                        func.sum(per_line.c.claimed_cents).label("claimed"),
                        func.sum(per_line.c.paid_cents).label("paid"))
                 .group_by(per_line.c.code))
    rows = (await session.execute(query)).all()
    found = [{"code": str(row.code or ""), "lines": int(row.lines), "claimed": int(row.claimed),
              "paid": int(row.paid)} for row in rows]
    return answered, sorted(found, key=lambda row: (-row["lines"], row["code"]))


async def open_by_age(session: AsyncSession, tenant_id: uuid.UUID,
                      on: date) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """The balance still owed on invoices, by days past their due date (0–30, 31–60,
    61–90, more than 90), and apart what is not due yet: {age: {count, cents}}."""
    balance = I.c.total_cents - I.c.credited_cents - I.c.paid_cents
    age = case((I.c.due_on > on, "not_due"),
               (I.c.due_on >= on - timedelta(days=30), "0-30"),
               (I.c.due_on >= on - timedelta(days=60), "31-60"),
               (I.c.due_on >= on - timedelta(days=90), "61-90"), else_="90+")
    # Grouped on the subquery's column: PostgreSQL cannot match a CASE whose dates are
    # parameters in the SELECT with the same CASE in the GROUP BY.
    owed = (select(age.label("age"), balance.label("balance"))
            .where(I.c.tenant_id == tenant_id, I.c.doc_type == "invoice",
                   I.c.due_on.is_not(None), balance > 0).subquery())
    rows = (await session.execute(
        select(owed.c.age, func.count().label("invoices"),
               func.sum(owed.c.balance).label("cents")).group_by(owed.c.age))).all()
    found = {row.age: {"count": int(row.invoices), "cents": int(row.cents)} for row in rows}
    empty = {"count": 0, "cents": 0}
    return ({key: found.get(key, empty) for key, _label in AGES},
            found.get("not_due", empty))


@dataclass(frozen=True)
class Figures:
    on: date
    at: datetime
    months: list[tuple[Month, int, int]]
    answered: int
    by_code: list[dict[str, Any]]
    ages: dict[str, dict[str, int]]
    not_due: dict[str, int]


# The hospital's figures of the day, kept a little while: the aggregates read a year of
# invoices, payments and claim answers (about a second for a hospital of a million acts),
# and a dashboard looked at again a moment later need not read them again. The page says
# when they were computed, and its refresh link computes them anew.
KEEP_SECONDS = 120
_kept: dict[uuid.UUID, tuple[float, Figures]] = {}


async def figures(desk: Desk, on: date, *, fresh: bool = False) -> Figures:
    kept = _kept.get(desk.tenant_id)
    if (not fresh and kept is not None and kept[1].on == on
            and time_now() - kept[0] < KEEP_SECONDS):
        return kept[1]
    months = last_months(on)
    tenant_id = desk.tenant_id
    if desk.session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        db = desk.request.state.db

        async def apart(query: Callable[..., Awaitable[Any]], *args: Any) -> Any:
            async with db.transaction() as session:
                return await query(session, tenant_id, *args)

        billed, paid, (answered, by_code), (ages, not_due) = await asyncio.gather(
            apart(billed_by_month, months), apart(paid_by_month, months),
            apart(refusals, months), apart(open_by_age, on))
    else:  # SQLite: one writer at a time, and this page's transaction is it
        session = desk.session
        billed = await billed_by_month(session, tenant_id, months)
        paid = await paid_by_month(session, tenant_id, months)
        answered, by_code = await refusals(session, tenant_id, months)
        ages, not_due = await open_by_age(session, tenant_id, on)
    found = Figures(on=on, at=datetime.now(LUXEMBOURG), months=[
        (m, billed.get((m.year, m.month), 0), paid.get((m.year, m.month), 0)) for m in months],
        answered=answered, by_code=by_code, ages=ages, not_due=not_due)
    if len(_kept) > 10_000:
        _kept.clear()
    _kept[tenant_id] = (time_now(), found)
    return found


def percent(part: int, whole: int) -> Decimal:
    """`part` of `whole` in percent, to a tenth (exact: no float)."""
    if whole <= 0:
        return Decimal("0.0")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)


# --------------------------------------------------------------------------------- page


@page(*BILLING)
async def dashboard(desk: Desk) -> Response:
    on = billing_service.today()
    locale, language = locale_of(desk.language), desk.language
    found = await figures(desk, on, fresh=bool(desk.request.query_params.get("refresh")))
    months, answered, by_code = found.months, found.answered, found.by_code
    ages, not_due = found.ages, found.not_due
    codes = anomalies.load(desk.request.state.settings.invoices_dir)

    month_rows = [{"label": format_date(m.first, "MMMM y", locale=locale),
                   "short": format_date(m.first, "MMM yy", locale=locale),
                   "billed": billed, "paid": paid} for m, billed, paid in months]
    billed_chart = charts.bar_chart(
        chart_id="chart-billed", title=desk._("Billed and paid per month"),
        description=desk._("Invoices issued and payments received in each of the last 12 "
                           "months, in euros."),
        series=[charts.Series(desk._("Billed"), BILLED), charts.Series(desk._("Paid"), PAID)],
        groups=[charts.Group(row["short"], (row["billed"], row["paid"]),
                             (f"{money(row['billed'], language)} EUR",
                              f"{money(row['paid'], language)} EUR")) for row in month_rows],
        empty=desk._("Nothing billed or paid in these months."))

    code_rows = []
    for item in by_code:
        described = anomalies.describe(codes, {"code": item["code"]}, language)
        rate = percent(item["lines"], answered)
        code_rows.append({**item, "label": described["label"], "rate": rate,
                          "rate_text": format_decimal(rate, format="0.0", locale=locale) + " %"})
    refusal_chart = charts.bar_chart(
        chart_id="chart-refusals", title=desk._("Rejection rate per anomaly code"),
        description=desk._("Share of the lines of the last 12 months' claim batches, as "
                           "answered by the insurers, refused or cut, per anomaly code."),
        series=[charts.Series(desk._("Rejection rate"), REFUSED)],
        groups=[charts.Group(f"{row['label']} ({row['code']})", (row["rate"],),
                             (row["rate_text"],)) for row in code_rows],
        empty=desk._("No claimed line was refused or cut."), horizontal=True)

    age_rows = [{"key": key, "label": desk._(label), **ages[key]} for key, label in AGES]
    age_chart = charts.bar_chart(
        chart_id="chart-ages", title=desk._("Open amounts by age"),
        description=desk._("What is still owed on invoices, by days past their due date, "
                           "in euros."),
        series=[charts.Series(desk._("Open amount"), OPEN)],
        groups=[charts.Group(row["label"], (row["cents"],),
                             (f"{money(row['cents'], language)} EUR",)) for row in age_rows],
        empty=desk._("Nothing is past due."), horizontal=True)

    return render(desk, "dashboard.html", billed_chart=billed_chart, month_rows=month_rows,
                  refusal_chart=refusal_chart, code_rows=code_rows, answered=answered,
                  age_chart=age_chart, age_rows=age_rows, not_due=not_due,
                  computed_at=found.at.strftime("%H:%M:%S"))

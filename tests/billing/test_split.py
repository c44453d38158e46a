"""Splitting a stay's priced lines into invoices, without a database."""

from datetime import date

from luxfact.billing.split import Payer, split
from luxfact.tariffs.pricing import price_stay
from tests.tariffs.test_pricing import ADULT, INPATIENT, SNAPSHOT, act

CNS = Payer("CNS", None, "statutory", date(2020, 1, 1), None)


def test_identical_acts_share_a_record_and_others_keep_their_own() -> None:
    """Acts of one tariff share the record of their computation only when their amounts
    are the same: the second technical act of the day, reduced, keeps its own. The lines
    are read one by one as the split goes, and a line's `Amounts` is made when it is read:
    with this order, CPython gives the reduced act's `Amounts` the memory (so the id) of
    the first act's, gone by then, which a key by identity took for the same amounts."""
    day = INPATIENT.admitted
    acts = [act("6G31", day, "L1", performer="11111111"), act("N101", day, "L2"),
            act("N101", day, "L3"), act("6G31", day, "L4", performer="11111111")]
    pricing = price_stay(SNAPSHOT, INPATIENT, ADULT, acts)
    [insurer] = [d for d in split(pricing, pricing.lines, [CNS], {}, set())
                 if d.kind == "insurer"]
    lines = {line.act_id: line for line in insurer.lines}
    assert (lines["L1"].pricing["percent"], lines["L4"].pricing["percent"]) == ("100", "50")
    assert lines["L4"].pricing["reasons"] == ["inpatient_100", "secondary_act_50"]
    assert "50 % = 20.00" in lines["L4"].pricing["explanation"]
    assert lines["L2"].pricing["explanation"].split("\n", 1)[1] == (
        lines["L3"].pricing["explanation"].split("\n", 1)[1])
    assert lines["L2"].pricing is not lines["L3"].pricing  # each its own first line

"""Benchmark of the pricing engine against the bare ceiling of a tariff look-up.

    .venv/bin/python benchmarks/pricing.py [--acts N] [--seed S]

Builds a deterministic catalogue (5,000 codes in five nomenclatures, three tariff versions
each, the real cote schedule) and 30,000 stays sharing the acts (1,000,000 by default), then:

- engine: `price_stay` on every stay (acts, secondary-act reductions, who pays what and the
  daily participation), from a fresh snapshot, so building its index is included;
- engine again on the same snapshot: the steady state of a server, whose snapshot lives as
  long as its catalogue version;
- ceiling: for each of the same acts, a dict look-up, a bisect on validity, one Decimal
  multiply and a quantize, nothing else: what no engine written in Python can beat;
- for reference, the steady state again with every priced line read (`lines` holds the
  priced parts; a `PricedLine` is made when read);
- for reference, the catalogue's own look-ups per act (`act`, `key_letter_value`,
  `unit_price`): a unit price, no shares, no line;
- for reference, the floor of any engine doing what the issue asks: the ceiling's work, plus
  each stay's acts put in order of day and, per act, a patient share at one rate (a
  multiply and a quantize) and the insurer's part, the three amounts kept as the line. No
  explanation, no secondary acts, no participation, no quantity or modifiers: the least
  that splits every line. Its ratio to the ceiling bounds what an engine written in Python
  can reach.

Prints acts/s for each, the engine/ceiling ratio (target: at least 0.5) and the peak RSS
(target: < 1 GB).
"""

import argparse
import gc
import random
import resource
import sys
import time
from bisect import bisect_right
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from luxfact.tariffs.catalogue import (
    CENT,
    ActVersion,
    Cote,
    KeyLetterValue,
    Modifier,
    Nomenclature,
    Parameter,
    Rule,
    TariffSnapshot,
    unit_price,
)
from luxfact.tariffs.pricing import (
    ActInput,
    PatientInfo,
    StayInfo,
    price_stay,
)

CODES = 5_000
STAYS = 30_000
FIRST_DAY = date(2023, 3, 1)
LAST_ADMISSION = date(2025, 10, 31)
FLOOR_SHARE = Decimal("0.12")  # the floor's one patient rate (an outpatient act's 12 %)

# nomenclature -> (category, key letter, share of the codes, code prefix)
NOMENCLATURES = {
    "MED": ("doctor", "M", 0.30, "C"),
    "TECH": ("doctor", "T", 0.30, "6G"),
    "NURS": ("nursing", "N", 0.20, "N"),
    "HOSP": ("hospital", "H", 0.16, "F"),
    "CP": ("supplement", "S", 0.04, "CP"),
}
COTES = [("2018-08-01", "814.40"), ("2020-01-01", "834.76"), ("2021-10-01", "855.62"),
         ("2022-04-01", "877.01"), ("2023-02-01", "898.93"), ("2023-04-01", "921.40"),
         ("2023-09-01", "944.43"), ("2025-05-01", "968.04")]
# Illustrative values: the doctors' key-letter values are not public here.
KEY_LETTERS = {
    "M": ("eur", ["4.8000", "4.9500", "5.1000"]),
    "T": ("index100", ["0.55210", "0.56870", "0.58010"]),
    "N": ("index100", ["0.80132", "0.80132", "0.82540"]),
    "H": ("eur", ["1.0000", "1.0000", "1.0000"]),
    "S": ("eur", ["1.0000", "1.0000", "1.0000"]),
}
PARAMETERS = {
    "daily_participation_inpatient": "19.92", "daily_participation_day_hospital": "9.96",
    "annual_day_cap": "30", "exemption_age": "18", "childbirth_exempt_days": "12",
    "outpatient_rate_adult": "88", "outpatient_rate_minor": "100", "inpatient_rate": "100",
    "first_class_surcharge_percent": "66",
}
YEAR_STARTS = [date(2023, 1, 1), date(2024, 1, 1), date(2025, 1, 1)]


def build_snapshot(rng: random.Random) -> TariffSnapshot:
    nomenclatures = {code: Nomenclature(code, code, code, category)
                     for code, (category, *_rest) in NOMENCLATURES.items()}
    acts: dict[str, list[ActVersion]] = {}
    for nomenclature, (_category, letter, share, prefix) in NOMENCLATURES.items():
        for number in range(int(CODES * share)):
            code = f"{prefix}{number}"
            # Three consecutive versions, each code changing on its own day.
            starts = [YEAR_STARTS[0], YEAR_STARTS[1] + timedelta(rng.randrange(90)),
                      YEAR_STARTS[2] + timedelta(rng.randrange(90))]
            ends = [starts[1] - timedelta(1), starts[2] - timedelta(1), None]
            acts[code] = [
                ActVersion(start, end, nomenclature, code, f"acte {code}", f"Akt {code}",
                           Decimal(rng.randrange(50, 8000)) / 100, letter)
                for start, end in zip(starts, ends, strict=True)]
    key_letters = {
        letter: [KeyLetterValue(start, end, letter, basis, Decimal(value))
                 for start, end, value in zip(YEAR_STARTS, [date(2023, 12, 31),
                                                            date(2024, 12, 31), None],
                                              values, strict=True)]
        for letter, (basis, values) in KEY_LETTERS.items()}
    return TariffSnapshot(
        nomenclatures=nomenclatures,
        acts=acts,
        key_letters=key_letters,
        cotes=[Cote(date.fromisoformat(day), Decimal(cote)) for day, cote in COTES],
        rules=[
            Rule(date(2023, 1, 1), None, "secondary_percent", "@TECH", (), Decimal(50)),
            Rule(date(2023, 1, 1), None, "non_cumulable", "C1", ("C2",), None),
            Rule(date(2023, 1, 1), None, "max_per_day", "N1", (), Decimal(3)),
        ],
        modifiers={
            "NUIT": [Modifier(date(2023, 1, 1), None, "NUIT", "nuit", "Nacht", Decimal(50),
                              ("@MED", "@TECH"), False)],
            "CONF": [Modifier(date(2023, 1, 1), None, "CONF", "confort", "Komfort",
                              Decimal(20), ("*",), True)],
        },
        parameters={name: [Parameter(date(2018, 1, 1), None, name, Decimal(value))]
                    for name, value in PARAMETERS.items()},
    )


Stay = tuple[StayInfo, PatientInfo, list[ActInput]]


def build_stays(rng: random.Random, snapshot: TariffSnapshot, total_acts: int) -> list[Stay]:
    codes = {n: [c for c, v in snapshot.acts.items() if v[0].nomenclature == n]
             for n in NOMENCLATURES}
    pool = [(n, codes[n]) for n in NOMENCLATURES]
    weights = [NOMENCLATURES[n][2] for n in NOMENCLATURES]
    # A quick run (--acts) keeps the acts per stay of the full one.
    stays_count = max(1, min(STAYS, STAYS * total_acts // 1_000_000))
    cuts = sorted(rng.sample(range(1, total_acts), stays_count - 1))
    counts = [b - a for a, b in zip([0, *cuts], [*cuts, total_acts], strict=True)]
    span = (LAST_ADMISSION - FIRST_DAY).days
    doctors = [f"{10000000 + i * 37:08d}" for i in range(400)]
    stays: list[Stay] = []
    line = 0
    for count in counts:
        kind = rng.choices(["inpatient", "day_hospital", "outpatient", "emergency"],
                           [40, 20, 30, 10])[0]
        admitted = FIRST_DAY + timedelta(rng.randrange(span))
        length = rng.randrange(21) if kind == "inpatient" else rng.randrange(2) * (
            kind == "emergency")
        discharged = admitted + timedelta(length)
        tiers = ((admitted, admitted + timedelta(90)),) if rng.random() < 0.05 else ()
        prior = {admitted.year: rng.randrange(35)} if rng.random() < 0.2 else {}
        stay = StayInfo(kind, admitted, discharged,
                        childbirth=kind == "inpatient" and rng.random() < 0.05,
                        psychiatric=kind == "day_hospital" and rng.random() < 0.1,
                        social_tiers_payant=tiers, prior_participation_days=prior)
        patient = PatientInfo(date(1930, 1, 1) + timedelta(rng.randrange(34000)))
        if patient.birth_date > admitted:
            patient = PatientInfo(admitted - timedelta(rng.randrange(1, 6000)))
        first_class = kind == "inpatient" and rng.random() < 0.1
        team = rng.sample(doctors, 3)
        acts = []
        for _ in range(count):
            nomenclature, candidates = rng.choices(pool, weights)[0]
            modifiers: tuple[str, ...] = ()
            if rng.random() < 0.04:
                modifiers = ("NUIT",) if nomenclature in ("MED", "TECH") else ("CONF",)
            line += 1
            acts.append(ActInput(
                line_id=f"L{line:07d}",
                code=rng.choice(candidates),
                day=admitted + timedelta(rng.randrange(length + 1)),
                quantity=1 if rng.random() < 0.9 else rng.randrange(2, 4),
                modifiers=modifiers,
                performer=rng.choice(team),
                first_class=first_class,
            ))
        stays.append((stay, patient, acts))
    return stays


def run_engine(snapshot: TariffSnapshot, stays: list[Stay]) -> tuple[float, Decimal]:
    started = time.perf_counter()
    total = Decimal(0)
    for stay, patient, acts in stays:
        until = stay.discharged or stay.admitted
        total += price_stay(snapshot, stay, patient, acts, until).gross
    return time.perf_counter() - started, total


def run_reading(snapshot: TariffSnapshot, stays: list[Stay]) -> float:
    """The engine's steady state again, then every priced line read (made, its gross and
    reasons read): what a consumer of all the lines pays on top of the pricing."""
    started = time.perf_counter()
    for stay, patient, acts in stays:
        until = stay.discharged or stay.admitted
        for line in price_stay(snapshot, stay, patient, acts, until).lines:
            line.gross, line.reasons  # noqa: B018  # reading is what is measured
    return time.perf_counter() - started


def run_catalogue(snapshot: TariffSnapshot, stays: list[Stay]) -> float:
    started = time.perf_counter()
    for _stay, _patient, acts in stays:
        for act in acts:
            version = snapshot.act(act.code, act.day)
            value = snapshot.key_letter_value(version.key_letter, act.day)[0]
            unit_price(version.coefficient, value)
    return time.perf_counter() - started


def run_floor(table: dict, stays: list[Stay]) -> float:
    started = time.perf_counter()
    total = Decimal(0)
    by_day = attrgetter("day")
    for _stay, _patient, acts in stays:
        grosses, insurers, patients = [], [], []
        for act in sorted(acts, key=by_day):
            starts, prices = table[act.code]
            coefficient, value = prices[bisect_right(starts, act.day) - 1]
            gross = (coefficient * value).quantize(CENT, ROUND_HALF_UP)
            patient = (gross * FLOOR_SHARE).quantize(CENT, ROUND_HALF_UP)
            grosses.append(gross)
            patients.append(patient)
            insurers.append(gross - patient)
        total += sum(grosses)
    return time.perf_counter() - started


def ceiling_table(snapshot: TariffSnapshot) -> dict[str, tuple[list[date], list[Decimal]]]:
    """Per code, version starts and (coefficient, key-letter value) pairs: built untimed."""
    table = {}
    for code, versions in snapshot.acts.items():
        table[code] = ([v.valid_from for v in versions],
                       [(v.coefficient, snapshot.key_letter_value(v.key_letter,
                                                                  v.valid_from)[0])
                        for v in versions])
    return table


def run_ceiling(table: dict, stays: list[Stay]) -> tuple[float, Decimal]:
    started = time.perf_counter()
    total = Decimal(0)
    for _stay, _patient, acts in stays:
        for act in acts:
            starts, prices = table[act.code]
            coefficient, value = prices[bisect_right(starts, act.day) - 1]
            total += (coefficient * value).quantize(CENT, ROUND_HALF_UP)
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acts", type=int, default=1_000_000, help="acts to price")
    parser.add_argument("--seed", type=int, default=20251001, help="random seed")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each measurement, the best one kept (timings vary)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    snapshot = build_snapshot(rng)
    stays = build_stays(rng, snapshot, args.acts)
    acts = sum(len(s[2]) for s in stays)
    print(f"{acts:,} acts, {len(stays):,} stays, {len(snapshot.acts):,} codes × 3 versions")

    cold_seconds = warm_seconds = ceiling_seconds = catalogue_seconds = float("inf")
    reading_seconds = floor_seconds = float("inf")
    table = ceiling_table(snapshot)
    for _ in range(args.repeat):
        # A fresh snapshot for the engine: its index is built inside the timed run.
        fresh = build_snapshot(random.Random(args.seed))
        # Each measurement starts with no garbage left to collect: the million acts just
        # built (or the previous run's objects) would otherwise cost whichever run comes
        # next a full collection, 1-2 s here, that is not its own.
        gc.collect()
        seconds, engine_total = run_engine(fresh, stays)
        cold_seconds = min(cold_seconds, seconds)
        gc.collect()
        seconds, warm_total = run_engine(fresh, stays)
        warm_seconds = min(warm_seconds, seconds)
        assert warm_total == engine_total, "pricing twice must give the same amounts"
        gc.collect()
        ceiling_seconds = min(ceiling_seconds, run_ceiling(table, stays)[0])
        gc.collect()
        floor_seconds = min(floor_seconds, run_floor(table, stays))
        gc.collect()
        catalogue_seconds = min(catalogue_seconds, run_catalogue(snapshot, stays))
        gc.collect()
        reading_seconds = min(reading_seconds, run_reading(fresh, stays))

    def rate(seconds: float) -> float:
        return acts / seconds

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"engine, new snapshot : {rate(cold_seconds):11,.0f} acts/s  ({cold_seconds:.2f} s, "
          f"gross {engine_total:,} €)")
    print(f"engine, steady state : {rate(warm_seconds):11,.0f} acts/s  ({warm_seconds:.2f} s)")
    print(f"ceiling              : {rate(ceiling_seconds):11,.0f} acts/s  "
          f"({ceiling_seconds:.2f} s)")
    print(f"engine + every line  : {rate(reading_seconds):11,.0f} acts/s  "
          f"({reading_seconds:.2f} s, reference: each line made and read)")
    print(f"catalogue look-ups   : {rate(catalogue_seconds):11,.0f} acts/s  "
          f"({catalogue_seconds:.2f} s, reference)")
    print(f"floor of any engine  : {rate(floor_seconds):11,.0f} acts/s  "
          f"({floor_seconds:.2f} s, reference: the ceiling, each line split, a stay's "
          f"lines in order; ratio {ceiling_seconds / floor_seconds:.2f})")
    print(f"ratio engine/ceiling : {ceiling_seconds / cold_seconds:.2f} new "
          f"snapshot, {ceiling_seconds / warm_seconds:.2f} steady state  (target >= 0.5)")
    print(f"peak RSS             : {peak_mb:,.0f} MB  (target < 1024 MB)")


if __name__ == "__main__":
    main()

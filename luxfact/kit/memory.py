"""Keeping the cyclic garbage collector off what lives as long as the process.

CPython's full collection walks every tracked object. In a web worker most of them are
modules, SQLAlchemy's compiled statements and the tariff tables, which never die; under load
on the CI machine each full collection took 84–233 ms, six times a minute per worker, and
every request waiting on that worker waited as long (the API benchmark's fixed-rate p99,
docs/performance.md). Frozen objects are skipped by the collector and still freed by
reference counting when they die; only a reference cycle among them would be kept, and what
is frozen here is meant to be kept anyway.
"""

import gc


def freeze_long_lived() -> None:
    """Collect what is garbage now, then exempt everything alive from later collections.

    Call it when long-lived state has just been built (a worker's start, a new tariff
    catalogue), not on every request: the collection it runs first takes a tenth of a
    second.
    """
    gc.collect()
    gc.freeze()

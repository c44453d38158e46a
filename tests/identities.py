"""Matricules for test patients that never collide within one test run.

A matricule's serial has only three digits per birth date, and a test's hospital holds
each matricule once: drawing serials at random collided about once a hundred runs when a
test registered five patients born the same day. A counter from a random start gives
every call in a run a different serial until a thousand are drawn, and the random start
keeps runs from always using the same numbers.
"""

import itertools
import secrets

from luxfact.patients.matricule import complete

_serials = itertools.count(secrets.randbelow(1000))


def new_matricule(birth: str = "19800101") -> str:
    """A valid 13-digit matricule for someone born on `birth` (YYYYMMDD)."""
    return complete(birth + f"{next(_serials) % 1000:03d}")

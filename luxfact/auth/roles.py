"""The four roles. Every endpoint names the roles it allows; none is implied by another."""

from enum import StrEnum


class Role(StrEnum):
    clerk = "clerk"  # admission desk
    billing = "billing"  # billing officer
    admin = "admin"  # the hospital's administrator
    integration = "integration"  # a hospital system using the API


ALL_ROLES = frozenset(Role)

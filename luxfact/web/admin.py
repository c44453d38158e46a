"""The desk's admin pages, for the hospital's administrator (role `admin`).

- /desk/admin/users      users: create, change role, disable/enable (admin_users.py)
- /desk/admin/keys       API keys: create (shown once), revoke (admin_keys.py)
- /desk/admin/audit      the audit trail, filtered and paged (admin_audit.py)
- /desk/admin/hospital   the hospital's settings from its tenant file, read-only
                         (admin_hospital.py)
- /desk/admin/tariffs    tariff package upload, diff and apply (admin_tariffs.py)
"""

from starlette.routing import BaseRoute

from luxfact.web import admin_audit, admin_hospital, admin_keys, admin_tariffs, admin_users


def routes() -> list[BaseRoute]:
    return [
        *admin_users.routes(),
        *admin_keys.routes(),
        *admin_audit.routes(),
        *admin_hospital.routes(),
        *admin_tariffs.routes(),
    ]

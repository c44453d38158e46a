"""pre-admitted stays

`stays.pre_admission`: the planned admission of a stay created planned (a pre-admission):
its date and place, which cancelling the admission restores (the stay planned again, as it
was before); empty for a stay admitted at once, which is cancelled. Stays created before this revision count as admitted at once (their
admission cancelled, they are cancelled, as before): the audit trail knows which were
pre-admitted (`stay.plan`), but a migration reading it would have to see every tenant's
rows through row-level security.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'pre_admission',
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.drop_column('pre_admission')

"""claim states

Whether a batch is reconciled is counted per batch and status: the index on the insurer's
answers now holds the status after the batch, so the count reads the index alone. A batch's
amounts and file size become 64-bit: a large hospital's month passes 21 million euros.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('claim_batches', schema=None) as batch_op:
        for column in ('gross_cents', 'net_cents', 'size'):
            batch_op.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(),
                                  existing_nullable=column == 'size')
    with op.batch_alter_table('claim_line_results', schema=None) as batch_op:
        batch_op.drop_index('ix_claim_line_results_batch')
        batch_op.create_index('ix_claim_line_results_batch',
                              ['tenant_id', 'batch_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('claim_batches', schema=None) as batch_op:
        for column in ('gross_cents', 'net_cents', 'size'):
            batch_op.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer(),
                                  existing_nullable=column == 'size')
    with op.batch_alter_table('claim_line_results', schema=None) as batch_op:
        batch_op.drop_index('ix_claim_line_results_batch')
        batch_op.create_index('ix_claim_line_results_batch', ['tenant_id', 'batch_id'],
                              unique=False)

"""hl7

The log of HL7 v2 messages received (raw bytes, ACK, status, the patients, stays and acts
touched), one row per (sending facility, control id): the unique constraint is what applies
a message once, however many times and however concurrently it is delivered.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from luxfact.db import rls
from luxfact.db.types import UTCDateTime

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('hl7_messages',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('sending_application', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('sending_facility', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('control_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('message_type', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('ack_code', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('ack', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('patient_ids', JSON, nullable=False),
    sa.Column('stay_ids', JSON, nullable=False),
    sa.Column('act_ids', JSON, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('received_at', UTCDateTime(), nullable=False),
    sa.Column('processed_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_hl7_messages_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_hl7_messages')),
    sa.UniqueConstraint('tenant_id', 'sending_facility', 'control_id', name=op.f('uq_hl7_messages_tenant_id_sending_facility_control_id'))
    )
    with op.batch_alter_table('hl7_messages', schema=None) as batch_op:
        batch_op.create_index('ix_hl7_messages_tenant_received', ['tenant_id', 'received_at', 'id'], unique=False)
        batch_op.create_index('ix_hl7_messages_tenant_status', ['tenant_id', 'status', 'received_at', 'id'], unique=False)

    rls.enable_tenant_rls(op.get_bind(), 'hl7_messages')


def downgrade() -> None:
    with op.batch_alter_table('hl7_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_hl7_messages_tenant_status')
        batch_op.drop_index('ix_hl7_messages_tenant_received')

    op.drop_table('hl7_messages')

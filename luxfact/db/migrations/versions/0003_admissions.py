"""admissions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Patients (with their search keys and coverages), stays, movements and acts; stored responses
of idempotent requests. All tenant-owned, under row-level security.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from luxfact.db import rls
from luxfact.db.types import UTCDateTime, search_key_type

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_idempotency_keys_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'actor', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('patients',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('matricule', sqlmodel.sql.sqltypes.AutoString(length=13), nullable=True),
    sa.Column('no_matricule_reason', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('legacy_matricule', sqlmodel.sql.sqltypes.AutoString(length=11), nullable=True),
    sa.Column('family_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('given_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('family_folded', search_key_type(), nullable=False),
    sa.Column('given_folded', search_key_type(), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('death_date', sa.Date(), nullable=True),
    sa.Column('sex', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('street', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('postal_code', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('city', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('merged_into', sa.Uuid(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_patients_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_patients')),
    sa.UniqueConstraint('tenant_id', 'matricule', name=op.f('uq_patients_tenant_id_matricule'))
    )
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.create_index('ix_patients_tenant_birth', ['tenant_id', 'birth_date'], unique=False)
        batch_op.create_index('ix_patients_tenant_given', ['tenant_id', 'given_folded'], unique=False)
        batch_op.create_index('ix_patients_tenant_family', ['tenant_id', 'family_folded', 'given_folded'], unique=False)
        batch_op.create_index('ix_patients_tenant_legacy', ['tenant_id', 'legacy_matricule'], unique=False)

    op.create_table('coverages',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('payer', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('member_number', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('accident_number', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.Column('first_class', sa.Boolean(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'patient_id'], ['patients.tenant_id', 'patients.id'], name=op.f('fk_coverages_tenant_id_patient_id_patients')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_coverages_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coverages'))
    )
    with op.batch_alter_table('coverages', schema=None) as batch_op:
        batch_op.create_index('ix_coverages_tenant_patient', ['tenant_id', 'patient_id'], unique=False)

    op.create_table('patient_name_keys',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('key', search_key_type(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('family_folded', search_key_type(), nullable=False),
    sa.Column('given_folded', search_key_type(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'patient_id'], ['patients.tenant_id', 'patients.id'], name=op.f('fk_patient_name_keys_tenant_id_patient_id_patients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_patient_name_keys_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'key', 'patient_id', name=op.f('pk_patient_name_keys'))
    )
    with op.batch_alter_table('patient_name_keys', schema=None) as batch_op:
        batch_op.create_index('ix_patient_name_keys_patient', ['tenant_id', 'patient_id'], unique=False)
        batch_op.create_index('ix_patient_name_keys_ordered', ['tenant_id', 'key', 'family_folded', 'given_folded', 'patient_id'], unique=False)

    op.create_table('stays',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('admitted_at', UTCDateTime(), nullable=False),
    sa.Column('discharged_at', UTCDateTime(), nullable=True),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('room', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('bed', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('room_class', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('admitting_doctor', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('attending_doctor', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('childbirth', sa.Boolean(), nullable=False),
    sa.Column('psychiatric', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'patient_id'], ['patients.tenant_id', 'patients.id'], name=op.f('fk_stays_tenant_id_patient_id_patients')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stays_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_stays')),
    sa.UniqueConstraint('tenant_id', 'external_id', name=op.f('uq_stays_tenant_id_external_id'))
    )
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.create_index('ix_stays_tenant_patient', ['tenant_id', 'patient_id', 'admitted_at'], unique=False)
        batch_op.create_index('ix_stays_tenant_state', ['tenant_id', 'state', 'admitted_at'], unique=False)

    op.create_table('acts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('stay_id', sa.Uuid(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('performed_at', UTCDateTime(), nullable=False),
    sa.Column('performer', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('specialty', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('modifiers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('invoice_id', sa.Uuid(), nullable=True),
    sa.Column('tariff_version', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('gross_cents', sa.Integer(), nullable=False),
    sa.Column('insurer_cents', sa.Integer(), nullable=False),
    sa.Column('patient_cents', sa.Integer(), nullable=False),
    sa.Column('pricing', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'stay_id'], ['stays.tenant_id', 'stays.id'], name=op.f('fk_acts_tenant_id_stay_id_stays')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_acts_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_acts'))
    )
    with op.batch_alter_table('acts', schema=None) as batch_op:
        batch_op.create_index('ix_acts_tenant_stay', ['tenant_id', 'stay_id', 'performed_at'], unique=False)

    op.create_table('movements',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('stay_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('room', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('bed', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('room_class', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('cancels', sa.Uuid(), nullable=True),
    sa.Column('cancelled_by', sa.Uuid(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'stay_id'], ['stays.tenant_id', 'stays.id'], name=op.f('fk_movements_tenant_id_stay_id_stays')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_movements_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_movements')),
    sa.UniqueConstraint('tenant_id', 'stay_id', 'seq', name=op.f('uq_movements_tenant_id_stay_id_seq'))
    )
    conn = op.get_bind()
    for table in ("patients", "patient_name_keys", "coverages", "stays", "movements", "acts",
                  "idempotency_keys"):
        rls.enable_tenant_rls(conn, table)


def downgrade() -> None:
    op.drop_table('movements')
    with op.batch_alter_table('acts', schema=None) as batch_op:
        batch_op.drop_index('ix_acts_tenant_stay')

    op.drop_table('acts')
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.drop_index('ix_stays_tenant_state')
        batch_op.drop_index('ix_stays_tenant_patient')

    op.drop_table('stays')
    with op.batch_alter_table('patient_name_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_name_keys_patient')
        batch_op.drop_index('ix_patient_name_keys_ordered')

    op.drop_table('patient_name_keys')
    with op.batch_alter_table('coverages', schema=None) as batch_op:
        batch_op.drop_index('ix_coverages_tenant_patient')

    op.drop_table('coverages')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index('ix_patients_tenant_legacy')
        batch_op.drop_index('ix_patients_tenant_family')
        batch_op.drop_index('ix_patients_tenant_birth')
        batch_op.drop_index('ix_patients_tenant_given')

    op.drop_table('patients')
    op.drop_table('idempotency_keys')

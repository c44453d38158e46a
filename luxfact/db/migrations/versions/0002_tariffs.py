"""tariffs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

The national tariff catalogue (read-only for the application role) and the hospitals' own
price lists (tenant-owned, under row-level security).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

from luxfact.db import rls
from luxfact.db.types import DecimalText, UTCDateTime

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tariff_acts',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('nomenclature', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('label_fr', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('label_de', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('coefficient', DecimalText(), nullable=False),
    sa.Column('key_letter', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.PrimaryKeyConstraint('code', 'valid_from', name=op.f('pk_tariff_acts'))
    )
    with op.batch_alter_table('tariff_acts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tariff_acts_nomenclature'), ['nomenclature'], unique=False)

    op.create_table('tariff_cotes',
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('cote', DecimalText(), nullable=False),
    sa.PrimaryKeyConstraint('valid_from', name=op.f('pk_tariff_cotes'))
    )
    op.create_table('tariff_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('package_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('summary', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tariff_imports'))
    )
    op.create_table('tariff_key_letters',
    sa.Column('key_letter', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('basis', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('value', DecimalText(), nullable=False),
    sa.PrimaryKeyConstraint('key_letter', 'valid_from', name=op.f('pk_tariff_key_letters'))
    )
    op.create_table('tariff_modifiers',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('label_fr', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('label_de', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('percent', DecimalText(), nullable=False),
    sa.Column('applies_to', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('patient_only', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code', 'valid_from', name=op.f('pk_tariff_modifiers'))
    )
    op.create_table('tariff_nomenclatures',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('label_fr', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('label_de', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_tariff_nomenclatures'))
    )
    op.create_table('tariff_parameters',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('value', DecimalText(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'valid_from', name=op.f('pk_tariff_parameters'))
    )
    op.create_table('tariff_rules',
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('others', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('value', DecimalText(), nullable=True),
    sa.PrimaryKeyConstraint('rule', 'target', 'valid_from', name=op.f('pk_tariff_rules'))
    )
    op.create_table('tenant_prices',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('label_fr', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('label_de', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('label_en', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tenant_prices_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('tenant_id', 'code', 'valid_from', name=op.f('pk_tenant_prices'))
    )
    rls.enable_tenant_rls(op.get_bind(), "tenant_prices")


def downgrade() -> None:
    op.drop_table('tenant_prices')
    op.drop_table('tariff_rules')
    op.drop_table('tariff_parameters')
    op.drop_table('tariff_nomenclatures')
    op.drop_table('tariff_modifiers')
    op.drop_table('tariff_key_letters')
    op.drop_table('tariff_imports')
    op.drop_table('tariff_cotes')
    with op.batch_alter_table('tariff_acts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tariff_acts_nomenclature'))

    op.drop_table('tariff_acts')

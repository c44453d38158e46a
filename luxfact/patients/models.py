"""Patients, their coverages, and the search keys that make name search forgiving."""

import uuid
from datetime import date, datetime

from sqlalchemy import Column, ForeignKeyConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, tenant_id_field, utc_column
from luxfact.db.types import search_key_type
from luxfact.kit.time import utcnow


class Patient(SQLModel, table=True):
    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("tenant_id", "matricule"),
        Index("ix_patients_tenant_family", "tenant_id", "family_folded", "given_folded"),
        Index("ix_patients_tenant_given", "tenant_id", "given_folded"),
        Index("ix_patients_tenant_birth", "tenant_id", "birth_date"),
        Index("ix_patients_tenant_legacy", "tenant_id", "legacy_matricule"),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    # 13 digits, validated; None for a patient without one (foreign, not yet identified).
    matricule: str | None = Field(default=None, max_length=13)
    no_matricule_reason: str | None = Field(default=None, max_length=20)
    legacy_matricule: str | None = Field(default=None, max_length=11)
    family_name: str = Field(max_length=100)
    given_name: str = Field(max_length=100)
    # Accent- and case-free forms (kit.text.fold), what search compares.
    family_folded: str = Field(sa_column=Column(search_key_type(), nullable=False))
    given_folded: str = Field(sa_column=Column(search_key_type(), nullable=False))
    birth_date: date
    death_date: date | None = None
    sex: str = Field(max_length=1)
    language: str = Field(default="fr", max_length=2)
    street: str = Field(default="", max_length=200)
    postal_code: str = Field(default="", max_length=20)
    city: str = Field(default="", max_length=100)
    country: str = Field(default="LU", max_length=2)
    phone: str = Field(default="", max_length=40)
    email: str = Field(default="", max_length=254)
    merged_into: uuid.UUID | None = None
    version: int = 1
    created_at: datetime = created_at_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


class PatientNameKey(SQLModel, table=True):
    """Deletion neighbourhood of the folded family name: finds names one typo away.

    A name and a query one edit apart (substitution, insertion, deletion) always share a key
    among {the word, the word with one letter deleted}; candidates are then checked exactly.
    """

    __tablename__ = "patient_name_keys"
    __table_args__ = (
        Index("ix_patient_name_keys_patient", "tenant_id", "patient_id"),
        # Walked in name order for one key: a typo search reads a page, not every match.
        Index("ix_patient_name_keys_ordered", "tenant_id", "key", "family_folded",
              "given_folded", "patient_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"],
                             ondelete="CASCADE"),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    key: str = Field(sa_column=Column(search_key_type(), primary_key=True))
    patient_id: uuid.UUID = Field(primary_key=True)
    # The patient's sort key, copied so that a key's matches come out in name order.
    family_folded: str = Field(sa_column=Column(search_key_type(), nullable=False))
    given_folded: str = Field(sa_column=Column(search_key_type(), nullable=False))


class Coverage(SQLModel, table=True):
    """Who pays, for a period: the statutory insurer, another fund, an accident insurer,
    a foreign insurer, a complementary insurer, or a social tiers-payant attestation."""

    __tablename__ = "coverages"
    __table_args__ = (
        Index("ix_coverages_tenant_patient", "tenant_id", "patient_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    patient_id: uuid.UUID
    kind: str = Field(max_length=30)
    payer: str = Field(max_length=60)
    member_number: str = Field(default="", max_length=40)
    accident_number: str | None = Field(default=None, max_length=10)
    first_class: bool = False
    valid_from: date
    valid_to: date | None = None
    created_at: datetime = created_at_field()

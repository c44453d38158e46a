"""Imports every table module so the metadata is complete (migrations, tests)."""

from luxfact.audit.models import AuditEvent
from luxfact.auth.models import ApiKey, User
from luxfact.billing.models import Invoice, InvoiceDocument, InvoiceLine, NumberCounter, Payment
from luxfact.claims.models import ClaimBatch, ClaimBatchInvoice, ClaimFileChunk, ClaimLineResult
from luxfact.db.base import metadata
from luxfact.hl7.models import HL7Message
from luxfact.http.models import IdempotencyRecord
from luxfact.jobs.models import Job
from luxfact.patients.models import Coverage, Patient, PatientNameKey
from luxfact.stays.models import Act, Movement, Stay
from luxfact.tariffs.models import (
    TariffAct,
    TariffCote,
    TariffImport,
    TariffKeyLetter,
    TariffModifier,
    TariffNomenclature,
    TariffParameter,
    TariffRule,
    TenantPrice,
)
from luxfact.tenancy.models import Tenant
from luxfact.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Act",
    "ApiKey",
    "AuditEvent",
    "ClaimBatch",
    "ClaimBatchInvoice",
    "ClaimFileChunk",
    "ClaimLineResult",
    "Coverage",
    "HL7Message",
    "IdempotencyRecord",
    "Invoice",
    "InvoiceDocument",
    "InvoiceLine",
    "Job",
    "Movement",
    "NumberCounter",
    "Patient",
    "PatientNameKey",
    "Payment",
    "Stay",
    "TariffAct",
    "TariffCote",
    "TariffImport",
    "TariffKeyLetter",
    "TariffModifier",
    "TariffNomenclature",
    "TariffParameter",
    "TariffRule",
    "Tenant",
    "TenantPrice",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]


def tenant_owned_tables() -> list[str]:
    """Every table with a `tenant_id` column: each must be under row-level security."""
    return sorted(t.name for t in metadata.sorted_tables if "tenant_id" in t.columns)

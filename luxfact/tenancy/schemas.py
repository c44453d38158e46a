"""The hospital's own settings, as its administrator reads them over the API."""

import uuid

from pydantic import BaseModel


class TenantOut(BaseModel):
    id: uuid.UUID
    slug: str
    legal_name: str
    cns_provider_code: str
    iban: str | None
    bic: str | None
    invoice_number_pattern: str
    credit_note_number_pattern: str
    default_language: str
    timezone: str
    warnings: list[str]

"""The tariff catalogue over the API. Amounts are decimal strings (`"19.30"`), never floats."""

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from luxfact.kit.types import IsoDate

# Decimals leave the API as strings with their exact digits.
DecimalStr = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str)]


class ActQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date: IsoDate | None = Field(default=None, description="The act's date; default today "
                              "(Europe/Luxembourg).")


class ActSearchQuery(ActQuery):
    q: str = Field(min_length=1, max_length=100)
    limit: int = Field(default=20, ge=1, le=100)


class ActPrice(BaseModel):
    code: str
    nomenclature: str
    category: str
    label_fr: str
    label_de: str
    coefficient: DecimalStr
    key_letter: str
    key_letter_value: DecimalStr
    key_letter_basis: str
    cote: DecimalStr | None
    unit_price: DecimalStr
    currency: str = "EUR"
    date: dt.date
    version: str
    valid_from: dt.date
    valid_to: dt.date | None


class ActSearchResult(BaseModel):
    items: list[ActPrice]

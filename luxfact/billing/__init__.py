"""Billing: invoices, credit notes, their numbering, payments and documents."""

"""Webhooks: events sent to the hospital's own systems, signed, at least once."""

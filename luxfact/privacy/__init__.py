"""Data protection (GDPR): a patient's or a hospital's data exported, or erased once the law
no longer requires it to be kept. Driven by `luxfact privacy` (docs/privacy.md)."""

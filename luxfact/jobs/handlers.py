"""Every kind of job the product runs, imported by the worker so that each registers."""

from luxfact.webhooks import deliver  # noqa: F401 (webhook.deliver)

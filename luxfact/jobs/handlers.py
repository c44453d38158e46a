"""Every kind of job the product runs, imported by the worker so that each registers."""

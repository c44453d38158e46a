"""Prometheus metrics: `GET /metrics` (docs/metrics.md)."""

"""Hardening: tests that fail when a new route or table forgets a rule."""

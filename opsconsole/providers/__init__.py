"""Providers: one module per real system, each behind a small interface (base.py)."""

"""Versioned SQL migrations (``NNNN_name.sql``) and the runner that applies them."""

from alliance.core.migrations.runner import apply_migrations, pending_migrations

__all__ = ["apply_migrations", "pending_migrations"]

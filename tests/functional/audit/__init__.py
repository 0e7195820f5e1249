"""The audit trail on real SQLite and PostgreSQL, over real HTTP, through the real CLI."""

"""The running governance service over real HTTP, on SQLite and PostgreSQL."""

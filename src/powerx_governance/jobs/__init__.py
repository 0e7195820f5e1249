"""Background jobs behind one small queue interface, and database locks."""

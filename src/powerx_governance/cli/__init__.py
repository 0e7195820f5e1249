"""The `powerx` command line."""

"""What every command-line module shares: exit codes, consoles, the service of the running command."""

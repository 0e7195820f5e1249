"""The brief's scripts as commands: smoke, reconcile, metrics."""

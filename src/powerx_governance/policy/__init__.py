"""The policy engine: pure functions from catalog, inventory and rules to findings."""

"""Feature flags: `plugin-version-governance` and `plugin-upgrade-policy`, changeable at run time."""

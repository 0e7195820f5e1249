"""Numbered versions of `governance_rules.yaml`: history, diff and rollback."""

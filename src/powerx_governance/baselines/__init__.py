"""Tenant groups, their baselines and drift; fleet inventory; CycloneDX exports (issue 15)."""

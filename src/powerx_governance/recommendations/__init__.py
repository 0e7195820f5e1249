"""Recommendations: the current finding per tenant and plugin, with revisions and states."""

"""Tenant inventories: which plugin versions each tenant runs."""

"""Scans: load inventories and catalog, evaluate every installation, report."""

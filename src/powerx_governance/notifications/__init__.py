"""Notifications: an outbox written with the changes, templates, channels, a delivery worker, digests."""

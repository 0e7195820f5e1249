"""Outbound HTTP shared by every integration: retries with backoff and jitter, size caps, headers."""

"""CloudEvents for downstream services, delivered from the outbox to subscribed webhooks."""

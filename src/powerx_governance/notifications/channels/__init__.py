"""Notification channels behind one interface: console cards, the PowerX notify service, SMTP, IM webhooks."""

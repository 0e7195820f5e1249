"""Admin decisions on recommendations: upgrade, schedule, ignore; SLA follow-up."""

"""Bearer tokens and roles; tenant scope is resolved once per request."""

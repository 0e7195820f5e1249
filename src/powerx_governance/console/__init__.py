"""The web console: server-rendered pages over the governance services, shipped with every asset.

Sign-in exchanges an API token for a signed session cookie; every form carries a CSRF token.
Pages call the existing services (recommendations, decisions, audit, scans) and the
console-specific fleet aggregates in `queries`; charts are server-side SVG (`charts`).
"""

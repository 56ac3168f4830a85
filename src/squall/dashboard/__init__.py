"""The web dashboard: its read APIs (``api``) and the UI (``ui/``: sessions, routes, static assets)."""

"""The web dashboard served at /ui: session login (sessions.py), routes and static assets (routes.py)."""

"""The AWS wire kit every API shares: SigV4/SigV2, auth, credentials, error shapes, JSON-API helpers, HTTP."""

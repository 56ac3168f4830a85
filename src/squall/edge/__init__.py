"""The HTTP edge: AWS-compatible request authentication, routing and wire formats."""

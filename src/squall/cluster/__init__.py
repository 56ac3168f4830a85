"""Cluster mode (``squall up --nats-url``): the event bus, membership, placement's shell and forwarding on NATS
JetStream.  Nothing here runs, or is imported on the request path, without ``--nats-url``."""

__all__: list[str] = []

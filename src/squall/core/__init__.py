"""Shared values every service uses and nothing else: ARNs, timestamp formats, the invocation report lines.

``core`` imports only the standard library (``squall.core.errors``, ``squall.core.model``, ``squall.core.config`` and
``squall.core.clock`` move here in a later step of the re-cut).
"""

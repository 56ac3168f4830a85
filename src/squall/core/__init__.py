"""Shared values every service uses and nothing else: ARNs, timestamp formats, the invocation report lines.

``core`` imports only the standard library (``squall.errors``, ``squall.model``, ``squall.config`` and
``squall.clock`` move here in a later step of the re-cut).
"""

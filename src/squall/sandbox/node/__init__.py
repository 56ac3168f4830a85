"""The node: zygotes and sandboxed instances on one machine, behind a small asyncio API (``squall.sandbox.node.node``)."""

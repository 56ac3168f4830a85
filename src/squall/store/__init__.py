"""Persistent state: the metadata store (functions, versions, aliases, configs), the durable async event
queue, and invocation records and logs.  ``squall.store.metadata`` is the entry point."""

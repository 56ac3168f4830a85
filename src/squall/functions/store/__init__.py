"""Lambda's persistent state: the metadata store (functions, versions, aliases, configs, layers), the durable async
event queue, the code store, and invocation records and logs.  ``squall.functions.store.metadata`` is the entry
point."""

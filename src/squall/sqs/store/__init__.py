"""The queue store: queues, messages, attributes, visibility, long-poll waits and DLQ moves in SQLite."""

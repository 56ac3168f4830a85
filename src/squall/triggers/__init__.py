"""Event sources and delivery: the async invoke queue (and, later, HTTP routes, schedules, queues, storage events)."""

"""The ``squall`` command: one module per noun (up, deploy, invoke, logs, functions, invocations, usage)."""

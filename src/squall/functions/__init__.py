"""Lambda: the control-plane API (``api``, ``control/``), Invoke (``invoke_api``, ``invoker``), the instance pool
(``pool``), async delivery (``async_delivery``), metering, and the Lambda metadata, code and records (``store/``)."""

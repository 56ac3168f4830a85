"""SQS event source mappings: the Lambda API and the pollers (``api``) and their persistence (``store``)."""

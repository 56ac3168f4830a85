"""Scheduled invocations: the expressions and the pure firing decision (``expressions``), the API and firing loop
(``runner``) and the durable rules (``store``)."""

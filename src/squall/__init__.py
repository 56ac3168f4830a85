"""Squall: a self-hosted serverless platform for Python that speaks AWS Lambda's wire formats."""

__version__ = "0.1.0"

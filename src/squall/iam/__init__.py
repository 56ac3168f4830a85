"""IAM for Squall: roles and policies (the ``iam`` API), their evaluation, and STS GetCallerIdentity."""

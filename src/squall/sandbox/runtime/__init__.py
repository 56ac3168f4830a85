"""What runs INSIDE the sandbox: the runtime loop, the Lambda context, handler loading and error shapes.

Stdlib only, and nothing of the platform beyond ``squall.sandbox.protocol``: this code is in every instance.
"""

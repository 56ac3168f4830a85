"""Squall's demo function: says hello, and shows what a Lambda handler sees."""

import os
import time
from typing import Any

STARTED = time.time()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    name = (event or {}).get("name", "world")
    print(f"saying hello to {name}")
    return {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "request_id": context.aws_request_id,
        "memory_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "instance_age_s": round(time.time() - STARTED, 3),
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }

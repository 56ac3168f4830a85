"""The AWS CLI (v1, the test extra's ``awscli``), as the tests that check our wire formats against it run it.

Every such test carries :data:`needs_aws_cli`: without the CLI beside this Python they skip, all with one reason.
:func:`aws_env` is the environment they run it in: the given credentials and region only, nothing of the machine's
own AWS configuration (profile, config or credentials file, endpoint).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

__all__ = ["AWS_CLI", "aws_env", "needs_aws_cli"]

#: the CLI installed with the test extra, beside the Python running the tests
AWS_CLI = Path(sys.executable).with_name("aws")

needs_aws_cli = pytest.mark.skipif(
    not AWS_CLI.exists(), reason=f"the AWS CLI is not installed beside {sys.executable} (pip install -e '.[test]')"
)


def aws_env(key_id: str, secret: str, region: str, home: Path, **extra: str) -> dict[str, str]:
    """The process environment without any ``AWS_*`` (or ``COVERAGE_*``) variable, plus these credentials; ``HOME`` is ``home`` (so no
    ``~/.aws`` is read) and ``extra`` is added last (e.g. ``AWS_CONFIG_FILE``, ``AWS_ENDPOINT_URL``)."""
    # nor coverage's subprocess measurement: the CLI is not Squall's code, and measuring it only slows it down
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COVERAGE_"))}
    return env | {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **extra,
    }

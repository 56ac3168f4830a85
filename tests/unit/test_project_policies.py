"""squall.yaml ``policies:`` and ``role:``: expanded into IAM statements, errors citing the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from squall.cli.project import ProjectError, parse_project


def fn(**settings: Any) -> Any:
    doc = {"functions": {"f": {"handler": "app.handler", **settings}}}
    return parse_project(doc, base_dir=Path("/tmp"), check_paths=False).functions["f"]


def test_no_policies_means_none() -> None:
    f = fn()
    assert f.policies == () and f.role is None


def test_grants_and_statements_become_statements() -> None:
    f = fn(policies=[{"s3": "photos/originals/*", "actions": ["read"]},
                     {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}])  # fmt: skip
    assert f.policies == (
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::photos/originals/*"},
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"},
    )


def test_role_instead_of_policies() -> None:
    assert fn(role="arn:aws:iam::123456789012:role/app").role == "arn:aws:iam::123456789012:role/app"


@pytest.mark.parametrize(
    ("settings", "key", "fragment"),
    [
        ({"policies": [{"s3": "b", "actions": ["reed"]}]}, "functions.f.policies[0].actions", "unknown s3 action"),
        ({"policies": [{"sqs": "q"}]}, "functions.f.policies[0].actions", "missing"),
        ({"policies": [{"Effect": "Allow", "Action": "s3:*"}]}, "functions.f.policies[0]", "Resource"),
        ({"policies": {"s3": "b"}}, "functions.f.policies", "must be a list"),
        ({"role": "my-role"}, "functions.f.role", "role ARN"),
        ({"role": "arn:aws:iam::123456789012:role/a", "policies": []}, "functions.f.policies", "cannot be combined"),
    ],
)
def test_errors_cite_the_key(settings: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ProjectError) as info:
        fn(**settings)
    assert info.value.key == key and fragment in info.value.message

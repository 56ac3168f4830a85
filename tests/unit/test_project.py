"""Tests of the squall.yaml project file: parsing, defaults, and errors that cite the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from squall.cli.project import EventSpec, ProjectError, load_project, parse_project
from squall.core.errors import InvalidParameterValue

FULL = """\
functions:
  hello:
    handler: app.handler
    code: ./hello
    memory: 256
    timeout: 30
    environment: {GREETING: hi, DEBUG: true, RETRIES: 3}
    reserved_concurrency: 10
    provisioned_concurrency: 2
    ephemeral_storage: 1024
    network: none
    snapshot: true
    requirements: requirements.txt
    events:
      - http: {method: get, path: "/hello/{name}"}
      - schedule: {expression: "rate(5 minutes)"}
      - s3: {bucket: photos, events: ["s3:ObjectCreated:*"], prefix: originals/, suffix: .jpg}
      - sqs: {queue: jobs, batch_size: 10}
  minimal:
    handler: pkg/mod.main
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "squall.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def parse(tmp_path: Path, doc: Any) -> Any:
    return parse_project(doc, base_dir=tmp_path, source="squall.yaml")


def fn(**settings: Any) -> dict[str, Any]:
    return {"functions": {"f": {"handler": "app.handler", **settings}}}


def error(tmp_path: Path, doc: Any) -> str:
    with pytest.raises(ProjectError) as exc_info:
        parse(tmp_path, doc)
    assert isinstance(exc_info.value, InvalidParameterValue)
    return exc_info.value.message


def test_full_file(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "requirements.txt").write_text("requests\n")
    project = load_project(write(tmp_path, FULL))
    assert project.root == tmp_path.resolve()
    assert project.path == (tmp_path / "squall.yaml").resolve()
    assert list(project.functions) == ["hello", "minimal"]
    hello = project.function("hello")
    assert hello.handler == "app.handler"
    assert hello.code == (tmp_path / "hello").resolve()
    assert (hello.memory, hello.timeout, hello.ephemeral_storage) == (256, 30, 1024)
    assert hello.environment == {"GREETING": "hi", "DEBUG": "true", "RETRIES": "3"}
    assert (hello.reserved_concurrency, hello.provisioned_concurrency) == (10, 2)
    assert hello.network == "none"
    assert hello.snapshot is True
    assert hello.requirements == (tmp_path / "requirements.txt").resolve()
    assert hello.events == (
        EventSpec("http", {"method": "GET", "path": "/hello/{name}"}),
        EventSpec("schedule", {"expression": "rate(5 minutes)", "enabled": True}),
        EventSpec(
            "s3", {"bucket": "photos", "events": ["s3:ObjectCreated:*"], "prefix": "originals/", "suffix": ".jpg"}
        ),
        EventSpec("sqs", {"queue": "jobs", "batch_size": 10}),
    )


def test_defaults(tmp_path: Path) -> None:
    f = parse(tmp_path, {"functions": {"f": {"handler": "app.handler"}}}).function("f")
    assert f.code == tmp_path.resolve()
    assert (f.memory, f.timeout, f.ephemeral_storage) == (128, 3, 512)
    assert f.environment == {}
    assert f.reserved_concurrency is None and f.provisioned_concurrency is None
    assert f.network == "nat" and f.snapshot is False
    assert f.requirements is None
    assert f.events == ()


def test_default_requirements_is_picked_up_from_the_code_directory(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "requirements.txt").write_text("")
    assert (
        parse(tmp_path, fn(code="svc")).function("f").requirements == (tmp_path / "svc" / "requirements.txt").resolve()
    )
    assert parse(tmp_path, fn(code="svc", requirements=False)).function("f").requirements is None


def test_unknown_function_name_lookup(tmp_path: Path) -> None:
    project = parse(tmp_path, fn())
    with pytest.raises(ProjectError, match="no function named 'nope' \\(the file defines: f\\)"):
        project.function("nope")


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (fn(memory=64), "squall.yaml: functions.f.memory: must be an integer between 128 and 10240 (MB), got 64"),
        (fn(memory=20000), "functions.f.memory: must be an integer between 128 and 10240 (MB), got 20000"),
        (fn(memory="512"), "functions.f.memory: must be an integer between 128 and 10240 (MB), got '512'"),
        (fn(memory=True), "functions.f.memory: must be an integer between 128 and 10240 (MB), got true"),
        (fn(memory=256.5), "functions.f.memory: must be an integer between 128 and 10240 (MB), got 256.5"),
        (fn(timeout=0), "functions.f.timeout: must be an integer between 1 and 900 (seconds), got 0"),
        (fn(timeout=901), "functions.f.timeout: must be an integer between 1 and 900 (seconds)"),
        (fn(ephemeral_storage=256), "functions.f.ephemeral_storage: must be an integer between 512 and 10240 (MB)"),
        (fn(reserved_concurrency=-1), "functions.f.reserved_concurrency: must be an integer >= 0, got -1"),
        (fn(provisioned_concurrency=0), "functions.f.provisioned_concurrency: must be an integer >= 1, got 0"),
        (
            fn(reserved_concurrency=2, provisioned_concurrency=5),
            "functions.f.provisioned_concurrency: must not exceed reserved_concurrency (2), got 5",
        ),
        (fn(network="bridge"), "functions.f.network: must be 'nat', 'none' or 'host', got 'bridge'"),
        (fn(snapshot="yes please"), "functions.f.snapshot: must be true or false, got 'yes please'"),
        (fn(memroy=256), "functions.f.memroy: unknown key (did you mean 'memory'?); allowed keys: handler, code,"),
        (
            fn(handler="app"),
            "functions.f.handler: must be 'module.function' (e.g. app.handler), without spaces, got 'app'",
        ),
        (fn(handler="app. handler"), "functions.f.handler: must be 'module.function'"),
        ({"functions": {"f": {"code": "."}}}, "functions.f.handler: missing; set it to 'module.function'"),
        ({"functions": {"f": None}}, "functions.f.handler: missing"),
        ({"functions": {"f": ["handler"]}}, "functions.f: must be a mapping of function settings, got a list"),
        ({"functions": {"bad name": {"handler": "a.b"}}}, "functions.bad name: function names must be 1-64"),
        ({"functions": {"x" * 65: {"handler": "a.b"}}}, "function names must be 1-64"),
        ({"functions": {}}, "squall.yaml: functions: must be a non-empty mapping"),
        ({}, "squall.yaml: functions: missing; define at least one function"),
        ({"functions": {"f": {"handler": "a.b"}}, "function": {}}, "squall.yaml: function: unknown key (did you mean"),
        (None, "squall.yaml: file is empty"),
        (["functions"], "squall.yaml: must be a mapping of settings, got a list"),
        (fn(code="missing"), "functions.f.code: directory 'missing' does not exist"),
        (fn(requirements="nope.txt"), "functions.f.requirements: file 'nope.txt' does not exist"),
        (fn(requirements=3), "functions.f.requirements: must be a non-empty string"),
        # environment
        (fn(environment=["A=1"]), "functions.f.environment: must be a mapping of variable name to value, got a list"),
        (fn(environment={"1BAD": "x"}), "functions.f.environment.1BAD: variable names must start with a letter"),
        (fn(environment={"AWS_REGION": "x"}), "functions.f.environment.AWS_REGION: is reserved"),
        (
            fn(environment={"K1": None}),
            "functions.f.environment.K1: must be a string (or a number/boolean), got nothing",
        ),
        (fn(environment={"K1": {"a": 1}}), "functions.f.environment.K1: must be a string"),
        (
            fn(environment={"BIG": "x" * 5000}),
            "functions.f.environment: variables total 5003 bytes; Lambda's limit is 4096",
        ),
        # events
        (fn(events={"http": {}}), "functions.f.events: must be a list of triggers"),
        (fn(events=["http"]), "functions.f.events[0]: each trigger must be a mapping with exactly one of"),
        (fn(events=[{"http": {"path": "/a"}, "sqs": {"queue": "q"}}]), "functions.f.events[0]: each trigger must be"),
        (
            fn(events=[{"htp": {"path": "/a"}}]),
            "functions.f.events[0].htp: unknown trigger type (did you mean 'http'?)",
        ),
        (fn(events=[{"http": {"method": "GET"}}]), "functions.f.events[0].http.path: missing"),
        (fn(events=[{"http": {"path": "hello"}}]), "functions.f.events[0].http.path: must start with '/', got 'hello'"),
        (fn(events=[{"http": {"path": "/a", "method": "FETCH"}}]), "functions.f.events[0].http.method: must be one of"),
        (fn(events=[{"http": {"path": "/a", "verb": "GET"}}]), "functions.f.events[0].http.verb: unknown key"),
        (fn(events=[{"http": {"path": "/{p+}/x"}}]), "a greedy parameter {name+} must be the last segment"),
        (fn(events=[{"http": {"path": "/{a}/{a}"}}]), "parameter {a} appears twice"),
        (fn(events=[{"http": {"path": "/a{b}"}}]), "segment 'a{b}' of '/a{b}' is invalid"),
        (fn(events=[{"http": {"path": "/a b"}}]), "segment 'a b' of '/a b' is invalid"),
        (fn(events=[{"schedule": {}}]), "functions.f.events[0].schedule.expression: missing"),
        (fn(events=[{"schedule": {"expression": "every 5 minutes"}}]), "schedule.expression: must be rate("),
        (fn(events=[{"schedule": {"expression": "rate(1 minutes)"}}]), "use the singular unit: 'rate(1 minute)'"),
        (fn(events=[{"schedule": {"expression": "rate(5 minute)"}}]), "use the plural unit: 'rate(5 minutes)'"),
        (fn(events=[{"schedule": {"expression": "rate(0 minutes)"}}]), "the rate must be at least 1"),
        (fn(events=[{"schedule": {"expression": "cron(0 12 * * *)"}}]), "a cron expression has 6 fields"),
        (fn(events=[{"schedule": {"expression": "cron(0 12 * * *)"}}]), "written without cron( ): '0 12 * * *'"),
        (fn(events=[{"schedule": {"expression": "cron(0 25 * * ? *)"}}]), "schedule.expression: cron(0 25"),
        (fn(events=[{"schedule": {"expression": "cron(0 12 * * 1 *)"}}]), "schedule.expression: cron(0 12 * * 1 *)"),
        (fn(events=[{"schedule": {"expression": "61 * * * *"}}]), "not a valid cron expression"),
        (fn(events=[{"schedule": {"expression": "* * * *"}}]), "or a 5-field Unix cron"),
        (fn(events=[{"schedule": {"expression": "rate(1 hour)", "enabled": "no"}}]), "schedule.enabled: must be true"),
        (fn(events=[{"s3": {"events": ["s3:ObjectCreated:*"]}}]), "functions.f.events[0].s3.bucket: missing"),
        (fn(events=[{"s3": {"bucket": "Photos"}}]), "s3.bucket: bucket names are 3-63 characters"),
        (fn(events=[{"s3": {"bucket": "photos", "events": []}}]), "s3.events: must be a non-empty list"),
        (fn(events=[{"s3": {"bucket": "photos", "events": ["ObjectCreated"]}}]), "s3.events[0]: must be an S3 event"),
        (fn(events=[{"s3": {"bucket": "photos", "events": ["s3:ObjectCraeted:*"]}}]), "s3.events[0]: must be an S3"),
        (fn(events=[{"s3": {"bucket": "photos", "prefix": 3}}]), "s3.prefix: must be a string, got 3"),
        (fn(events=[{"sqs": {"batch_size": 1}}]), "functions.f.events[0].sqs.queue: missing"),
        (fn(events=[{"sqs": {"queue": "a queue"}}]), "sqs.queue: queue names are 1-80 characters"),
        (
            fn(events=[{"sqs": {"queue": "q", "batch_size": 0}}]),
            "sqs.batch_size: must be an integer between 1 and 10000",
        ),
        (
            fn(events=[{"sqs": {"queue": "q.fifo", "batch_size": 11}}]),
            "sqs.batch_size: must be an integer between 1 and 10,",
        ),
    ],
)
def test_errors_cite_file_and_key(tmp_path: Path, doc: Any, expected: str) -> None:
    message = error(tmp_path, doc)
    if expected.startswith("squall.yaml: "):
        assert message.startswith(expected)
    else:
        assert message.startswith("squall.yaml: ")
        assert expected in message


def test_error_attributes(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as exc_info:
        parse(tmp_path, fn(timeout=0))
    assert exc_info.value.source == "squall.yaml"
    assert exc_info.value.key == "functions.f.timeout"
    assert exc_info.value.code == "InvalidParameterValueException"


def test_valid_event_variants(tmp_path: Path) -> None:
    events = [
        {"http": {"path": "/"}},
        {"http": {"path": "/items/{id}/{proxy+}", "method": "delete"}},
        {"schedule": {"expression": "rate(1 day)", "enabled": False, "input": {"k": "v"}}},
        {"schedule": {"expression": "cron(0 12 * * ? *)"}},
        {"schedule": {"expression": "*/5 * * * *"}},
        {"s3": {"bucket": "my.bucket-1"}},
        {"sqs": {"queue": "orders.fifo", "batch_size": 10}},
    ]
    f = parse(tmp_path, fn(events=events)).function("f")
    assert [e.config for e in f.events] == [
        {"method": "ANY", "path": "/"},
        {"method": "DELETE", "path": "/items/{id}/{proxy+}"},
        {"expression": "rate(1 day)", "enabled": False, "input": {"k": "v"}},
        {"expression": "cron(0 12 * * ? *)", "enabled": True},
        {"expression": "*/5 * * * *", "enabled": True},
        {"bucket": "my.bucket-1", "events": ["s3:ObjectCreated:*"], "prefix": "", "suffix": ""},
        {"queue": "orders.fifo", "batch_size": 10},
    ]


def test_check_paths_off(tmp_path: Path) -> None:
    f = parse_project(fn(code="later", requirements="r.txt"), base_dir=tmp_path, check_paths=False).function("f")
    assert f.code == (tmp_path / "later").resolve()
    assert f.requirements == (tmp_path / "r.txt").resolve()


# -- the file itself --


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        functions:
          f:
            handler: app.handler
            memory: 256
            memory: 512
        """,
    )
    with pytest.raises(ProjectError, match=r"squall.yaml: line 5, column 5: invalid YAML: duplicate key 'memory'"):
        load_project(path)


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        functions:
          a: &base {handler: app.handler, memory: 256}
          b:
            <<: *base
            memory: 512
        """,
    )
    project = load_project(path)
    assert project.function("a").memory == 256
    assert project.function("b").memory == 512
    assert project.function("b").handler == "app.handler"


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "functions:\n  f: {handler: app.handler\n")
    with pytest.raises(ProjectError, match=r"squall.yaml: line \d+, column \d+: invalid YAML"):
        load_project(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"nope\.yaml: file not found"):
        load_project(tmp_path / "nope.yaml")
    with pytest.raises(ProjectError, match="is a directory; expected a project file such as"):
        load_project(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "squall.yaml"
    path.write_bytes(b"functions: \xff\xfe\n")
    with pytest.raises(ProjectError, match="not valid UTF-8"):
        load_project(path)


def test_python_objects_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "functions: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ProjectError, match="invalid YAML"):
        load_project(path)


def test_paths_are_relative_to_the_file_not_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proj" / "svc").mkdir(parents=True)
    path = tmp_path / "proj" / "squall.yaml"
    path.write_text("functions:\n  f: {handler: app.handler, code: svc}\n")
    monkeypatch.chdir(tmp_path)
    project = load_project(Path("proj") / "squall.yaml")
    assert project.function("f").code == (tmp_path / "proj" / "svc").resolve()
    with pytest.raises(ProjectError, match=r"^proj/squall.yaml: functions.f.memory"):
        path.write_text("functions:\n  f: {handler: app.handler, code: svc, memory: 1}\n")
        load_project(Path("proj") / "squall.yaml")

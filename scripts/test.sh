#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite (lint, types, tests).  README's second command; .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_prereqs.sh
# the dashboard's browser tests drive Debian's chromium through Playwright (never `playwright install`)
[ -x /usr/bin/chromium ] || _apt chromium || echo "note: chromium missing: the dashboard browser tests will skip" >&2
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# the dependency rules (pyproject.toml [tool.importlinter], docs/design.md "Code map")
.venv/bin/lint-imports
# The suite on three xdist workers (2 cores: modules spend much of their time waiting): whole modules per worker
# (--dist loadfile), since their module-scoped servers and nodes start once per module; every test picks free ports and names of its own (cgroups, network
# namespaces, data dirs), so workers never collide.  SQUALL_TEST_WORKERS=0 runs it in this process.  Coverage of the
# test process and of the `squall up` servers and CLI runs it starts is printed at the end (pyproject.toml
# [tool.coverage]).  pytest exits 5 when it collected no tests: set -e makes that a failure, as it should be.
# SQUALL_TEST_COVERAGE=0 leaves coverage out (it costs CPU: docs/SPEC.md, "The test suite").
# 3 on 2 cores: modules wait on servers, forks and sleeps (first pass measured 449 s vs 538 s with 2)
workers="${SQUALL_TEST_WORKERS:-3}"
dist=()
[ "$workers" = 0 ] || dist=(-n "$workers" --dist loadfile)
cov=(--cov --cov-report=term) cov2=(--cov --cov-append --cov-report=term)
[ "$#" -gt 0 ] || cov=(--cov --cov-report=)  # the whole suite: reported once, after the PostgreSQL pass
[ "${SQUALL_TEST_COVERAGE:-1}" = 1 ] || { cov=(); cov2=(); }
.venv/bin/python -m pytest -q -p no:cacheprovider "${dist[@]}" "${cov[@]}" "$@"
# the same contract tests and store-backed e2e tests on PostgreSQL (cluster mode's state layer): one behaviour on both
# backends.  Only for the whole suite (arguments select tests of the first pass alone).  Left out to keep it short:
# what touches no store (the AWS CLI's own parsing, the sandbox and HTTP behaviour in test_platform and
# test_function_urls) and restarts of a server whose state PostgreSQL keeps (the storage-event kill test still
# restarts on it).  tests/e2e/test_postgres.py (in the first pass) has the PostgreSQL-only promises.
if [ "$#" -eq 0 ]; then
    SQUALL_TEST_BACKEND=postgres .venv/bin/python -m pytest -q -p no:cacheprovider "${dist[@]}" "${cov2[@]}" \
        tests/contract/test_lambda_control.py tests/contract/test_sqs_api.py tests/contract/test_s3_api.py \
        tests/contract/test_s3_presign_post.py tests/contract/test_iam_api.py \
        tests/e2e/test_schedule_api.py tests/e2e/test_event_source_mappings.py tests/e2e/test_function_urls.py \
        tests/e2e/test_storage_events_durable.py tests/e2e/test_platform.py \
        -k "not aws_cli and not cli_v1 and not mappings_survive and not iam_survives and not restart and not oldest_first \
            and (not test_function_urls or url_config_crud or routes or deleting_function) \
            and (not test_platform or records or async_retries or weighted_alias or reserved_concurrency)"
fi

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
# pytest exits 5 when it collected no tests: set -e makes that a failure, as it should be
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# the same contract tests and store-backed e2e tests on PostgreSQL (cluster mode's state layer): one behaviour on both
# backends.  Only for the whole suite (arguments select tests of the first pass alone).  Left out: what does not touch
# a store (the AWS CLI's own parsing, the sandbox's behaviour in test_platform) and restarts of a server whose state
# PostgreSQL keeps anyway (test_mappings_survive_a_restart and the storage-event kill tests still restart on it).
if [ "$#" -eq 0 ]; then
    SQUALL_TEST_BACKEND=postgres .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/contract/test_lambda_control.py tests/contract/test_sqs_api.py tests/contract/test_s3_api.py \
        tests/contract/test_s3_presign_post.py tests/contract/test_iam_api.py \
        tests/e2e/test_schedule_api.py tests/e2e/test_event_source_mappings.py tests/e2e/test_function_urls.py \
        tests/e2e/test_storage_events_durable.py tests/e2e/test_platform.py \
        -k "not aws_cli and not cli_v1 and not iam_survives_a_restart and not restart_recovers_state \
            and not payload_limits and not unsigned_and_badly_signed and not concurrent_invokes_scale_out"
fi

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
# The suite on both cores: pytest-xdist runs whole modules per worker (--dist loadfile), since their module-scoped
# servers and nodes start once per module; every test picks free ports and names of its own (cgroups, network
# namespaces, data dirs), so workers never collide.  SQUALL_TEST_WORKERS=0 runs it in this process.  Coverage of the
# test process and of the `squall up` servers and CLI runs it starts is printed at the end (pyproject.toml
# [tool.coverage]).  pytest exits 5 when it collected no tests: set -e makes that a failure, as it should be.
# SQUALL_TEST_COVERAGE=0 leaves coverage out (it costs CPU: docs/SPEC.md, "The test suite").
workers="${SQUALL_TEST_WORKERS:-2}"
dist=()
[ "$workers" = 0 ] || dist=(-n "$workers" --dist loadfile)
cov=(--cov --cov-report=term)
[ "${SQUALL_TEST_COVERAGE:-1}" = 1 ] || cov=()
.venv/bin/python -m pytest -q -p no:cacheprovider "${dist[@]}" "${cov[@]}" "$@"

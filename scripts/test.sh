#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint, types, import contracts, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/plugin -x).
# SHIPMATE_TEST_WORKERS=N runs the tests in N pytest-xdist workers (tests that share
# the Docker engine or DataRobot's runner stay on one worker; see tests/conftest.py).
# Serial by default: on the 2-core machine under other load it was slower (docs/architecture.md).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --dev
# Everything below runs from the project virtualenv that setup.sh made.
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
lint_paths=(); for d in src tests bench examples; do [[ -d $d ]] && lint_paths+=("$d"); done
ruff check "${lint_paths[@]}"
echo "== mypy"
mypy
echo "== import contracts"
lint-imports
echo "== web console: eslint, tsc, vitest"
(cd console && npm run --silent lint && npx vitest run --reporter=dot)
echo "== pytest"
set +e
workers=${SHIPMATE_TEST_WORKERS:-1}
parallel=()
if [[ $workers != 1 ]]; then
    parallel=(-n "$workers" --dist loadgroup)
fi
python -m pytest "${parallel[@]}" "$@"
code=$?
set -e
if [[ $code == 5 ]]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit $code

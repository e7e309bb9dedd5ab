#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint, types, import contracts, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/plugin -x).
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
echo "== pytest"
set +e
python -m pytest "$@"
code=$?
set -e
if [[ $code == 5 ]]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit $code

#!/usr/bin/env bash
# The whole test suite, as `npm test` runs it: static checks, the generated CRDs
# compared with what is committed, then every test file through node's test runner
# (unit tests beside the code, integration/e2e suites under test/).
# Prerequisites the integration suites need (test guest, Kubernetes binaries) are
# built first, each cached, so test timeouts measure tests, not builds.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"

step() { printf '\n== %s\n' "$*" >&2; }

step "typecheck"
tsc -p tsconfig.json --noEmit
step "lint"
eslint --max-warnings 0 .
step "generated CRDs match the schemas"
node crds/src/generate.ts --check

step "prepare (hack/prepare.d, two lanes)"
bash hack/prepare.sh

step "tests"
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.test.ts' | sort)
if ((${#files[@]} == 0)); then echo "no test files found" >&2; exit 1; fi
reporters=(--test-reporter=spec --test-reporter-destination=stdout)
# KEYVIRT_TEST_DURATIONS=<file>: also write each file's wall time there, longest first.
if [[ -n "${KEYVIRT_TEST_DURATIONS:-}" ]]; then
  reporters+=(--test-reporter=./test/support/file-durations-reporter.ts --test-reporter-destination="$KEYVIRT_TEST_DURATIONS")
fi
# Three files at a time (ADR 0128).
exec node --test "${reporters[@]}" --test-concurrency="${KEYVIRT_TEST_CONCURRENCY:-3}" "${files[@]}"

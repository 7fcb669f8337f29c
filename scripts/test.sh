#!/usr/bin/env bash
# Runs every test of resume-server: the Rust unit and integration tests, the
# HTTP API fuzzed against its OpenAPI document (scripts/contract-fuzz.sh), the
# AsyncAPI document's validation, then the browser end-to-end test in Debian's
# headless Chromium.
#
# The fuzzing needs python3 with venv and curl, and builds the release server.
#
# The validation needs Node.js and tests/e2e/node_modules (installed here with
# `npm ci` when missing); the end-to-end test needs /usr/bin/chromium too
# (`apt-get install chromium`; .ci/run installs both).
# Without Chromium it is skipped with a message, except under CI=1, where a
# missing browser is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cluster tests run the workspace's binaries (resume-server, cql-test-node)
# as separate processes; build them first so every test finds them.
cargo build --workspace --bins
cargo test --workspace --all-targets

# The HTTP API against its OpenAPI document: Schemathesis on a release server.
./scripts/contract-fuzz.sh

# The session protocol's AsyncAPI document, checked by the AsyncAPI parser.
if [[ ! -d tests/e2e/node_modules ]]; then
    npm ci --prefix tests/e2e --no-audit --no-fund
fi
npm run contract --prefix tests/e2e

if [[ ! -x /usr/bin/chromium ]]; then
    if [[ "${CI:-}" == "1" ]]; then
        echo "test.sh: /usr/bin/chromium is missing; CI must install it" >&2
        exit 1
    fi
    echo "test.sh: skipping the browser end-to-end test: /usr/bin/chromium is not installed" >&2
    exit 0
fi
RESUME_SERVER_BIN="$PWD/target/debug/resume-server" npm test --prefix tests/e2e

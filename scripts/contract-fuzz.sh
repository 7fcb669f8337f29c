#!/usr/bin/env bash
# Contract fuzzing of the HTTP API: Schemathesis reads the OpenAPI document a
# running release server serves, generates valid and invalid requests from it
# and checks every answer against it (every check, Schemathesis' default: no
# 5xx, statuses, headers, content types and bodies as documented, valid
# requests accepted, invalid ones refused, auth enforced, unknown methods 405,
# deleted titles gone). The few exceptions are per operation, each with its
# reason, in scripts/schemathesis.toml (a `--checks` option here would
# override them).
#
# Needs python3 with venv; Schemathesis is installed, pinned by
# scripts/schemathesis-requirements.txt, into target/schemathesis-venv.
# Settings: scripts/schemathesis.toml. Extra arguments go to `st run`, e.g.
# `--max-examples 2000` or `--seed 7`. Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Examples per operation and phase: about a minute on a 2-core machine.
MAX_EXAMPLES=650
# Fixed, so that a run is reproducible; a failure prints how to reproduce it.
SEED=20251129
# How long the server may take to answer /healthz.
START_TIMEOUT_SECS=30

venv=target/schemathesis-venv
requirements=scripts/schemathesis-requirements.txt
# (Re)made when the pinned requirements change.
if ! cmp -s "$requirements" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi

cargo build --release -p resume-server
server_bin=target/release/resume-server

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT
# A signal ends the script through its EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM

# A fresh HS256 secret per run, in a file as the server wants it (never a flag).
head -c 48 /dev/urandom | base64 --wrap=0 >"$work/jwt-secret"

# The server gets the settings below and no others, whatever RESUME_*
# variables this shell holds.
for name in $(compgen -e | grep '^RESUME_' || true); do
    unset "$name"
done

# Port 0: the kernel picks a free port and the server logs it. The demo
# login's burst and the per-viewer ticket cap are raised because every
# generated request comes from one address and one viewer: with the defaults,
# after a few requests every login and ticket request would be a 429 and the
# fuzzer would never reach their validation. The limits themselves are tested
# in tests/it.
NO_COLOR=1 RUST_LOG=info "$server_bin" \
    --listen 127.0.0.1:0 \
    --data-dir "$work/data" \
    --jwt-secret-file "$work/jwt-secret" \
    --demo-login \
    --demo-login-burst 1000000 \
    --max-session-tickets-per-user 1000000 \
    2>"$work/server.log" &
server_pid=$!

base_url=""
deadline=$((SECONDS + START_TIMEOUT_SECS))
until [[ -n "$base_url" ]] && curl --silent --fail --max-time 1 "$base_url/healthz" >/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "contract-fuzz: the server exited:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "contract-fuzz: no answer from /healthz within ${START_TIMEOUT_SECS} s:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    port="$(sed -n 's/.*listening address=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log")"
    if [[ -n "$port" ]]; then
        base_url="http://127.0.0.1:$port"
    fi
    sleep 0.1
done

RESUME_FUZZ_TOKEN="$("$server_bin" --jwt-secret-file "$work/jwt-secret" token --sub fuzz-viewer)"
export RESUME_FUZZ_TOKEN

# A saved position, so that the reads find something from the first request.
curl --silent --show-error --fail --max-time 5 \
    -H "Authorization: Bearer $RESUME_FUZZ_TOKEN" \
    -H "Content-Type: application/json" \
    --data '{"movie_id":"inception","position_seconds":2843}' \
    "$base_url/api/v1/stream/progress"

status=0
"$venv/bin/st" --config-file scripts/schemathesis.toml --no-color run \
    "$base_url/api/v1/openapi.json" \
    --seed "$SEED" \
    --max-examples "$MAX_EXAMPLES" \
    --generation-database none \
    --report-dir target/schemathesis-report \
    "$@" || status=$?

if ((status != 0)); then
    echo "contract-fuzz: Schemathesis failed (exit $status); the server's log:" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"

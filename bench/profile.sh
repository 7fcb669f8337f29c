#!/usr/bin/env bash
# Where the server's CPU goes under scenario 1's load: a release server (embedded
# store, default settings, plus any VAR=value given as arguments), $SESSIONS sessions
# ticking 1/s, and `perf record -e cpu-clock` on the server alone for $SECONDS_SAMPLED
# seconds once every session is live. Prints the share of samples per thread and the
# heaviest symbols; the raw perf data stays in $OUT.
#
#   bench/profile.sh                                   # 19,000 sessions, default flush
#   bench/profile.sh RESUME_FLUSH_INTERVAL_MS=600000   # the session path alone
set -euo pipefail

SESSIONS=${SESSIONS:-19000}
SECONDS_SAMPLED=${SECONDS_SAMPLED:-30}
PROCESSES=${PROCESSES:-4}
SERVER_PORT=${SERVER_PORT:-18080}
SECRET=${SECRET:-bench-secret-bench-secret-bench-secret-0123}

cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-results/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""
LOAD_PID=""
cleanup() {
    [[ -n "$LOAD_PID" ]] && kill "$LOAD_PID" 2>/dev/null
    [[ -n "$SERVER_PID" ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)" >&2; exit 1; }

cargo build --release -p resume-server -p loadgen >&2
export RESUME_JWT_SECRET=$SECRET
env RESUME_LISTEN=127.0.0.1:$SERVER_PORT RESUME_DATA_DIR="$WORK/data" RESUME_MAX_SESSIONS=$SESSIONS \
    RESUME_MAX_CONNECTIONS=$((SESSIONS + 256)) "$@" target/release/resume-server 2>"$OUT/server.log" &
SERVER_PID=$!

metric() { # the value of an unlabelled metric, or nothing
    curl -sf "http://127.0.0.1:$SERVER_PORT/metrics" | awk -v name="$1" '$1 == name {print $2}'
}
wait_until() { # $1: what; $2...: a command that succeeds once it holds; 60 s at most
    local what=$1 deadline=$((SECONDS + 60))
    shift
    until "$@"; do
        if ((SECONDS > deadline)); then echo "gave up waiting for $what" >&2; exit 1; fi
        sleep 0.2
    done
}
wait_until "the server to listen" curl -sf "http://127.0.0.1:$SERVER_PORT/healthz" -o /dev/null

# Long enough for the ramp, the sampled window and a margin; killed afterwards.
target/release/loadgen sessions --addr 127.0.0.1:$SERVER_PORT --viewers "$SESSIONS" \
    --processes "$PROCESSES" --duration $((SECONDS_SAMPLED + 30)) --target profile \
    --out "$OUT/sessions.json" >"$OUT/loadgen.log" 2>&1 &
LOAD_PID=$!
all_live() { [[ "$(metric resume_live_sessions)" == "$SESSIONS" ]]; }
wait_until "$SESSIONS live sessions" all_live
# One flush interval for the sessions' writes to reach their steady rhythm.
sleep 5
perf record -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$OUT/perf.data" -- sleep "$SECONDS_SAMPLED" 2>"$OUT/perf-record.log"

{
    echo "Commit: $(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown); settings: ${*:-defaults}; $SESSIONS sessions"
    echo
    echo "Samples per thread:"
    perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
    echo
    echo "Heaviest symbols (self):"
    perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40
} | tee "$OUT/profile.txt"

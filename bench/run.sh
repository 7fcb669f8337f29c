#!/usr/bin/env bash
# Runs the six benchmark scenarios of docs/BENCHMARKS.md against a release build and prints one table.
#
#   bench/run.sh                          # full run: 19,000 sessions, 60 s plateau, 2 runs
#   SESSIONS=2000 DURATION=10 RUNS=1 bench/run.sh   # quick run
#
# Everything listens on 127.0.0.1; every process this script starts is stopped by
# pid. Reports land in $OUT (default target/bench-results/<timestamp>) as JSON, with the
# servers' logs, and `loadgen table` turns them into the table.
set -euo pipefail

SESSIONS=${SESSIONS:-19000}     # concurrent sessions / viewers per scenario
DURATION=${DURATION:-60}        # plateau seconds of scenarios 1-3
RUNS=${RUNS:-2}                 # repetitions; the table shows medians
PROCESSES=${PROCESSES:-4}       # loadgen processes (each may hold < 20,000 sockets)
CONNECT_RATE=${CONNECT_RATE:-50000} # upgrades/s asked for; the server sets the pace
MAX_CONNECTING=${MAX_CONNECTING:-512}  # upgrades in flight; well below the listen backlog (4096)
LOOKUP_SECONDS=${LOOKUP_SECONDS:-20}
LOOKUP_CONCURRENCY=${LOOKUP_CONCURRENCY:-64}
STORE_SECONDS=${STORE_SECONDS:-10}
SERVER_PORT=${SERVER_PORT:-18080}
SINK_PORT=${SINK_PORT:-18081}
SECRET=${SECRET:-bench-secret-bench-secret-bench-secret-0123}

cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""
trap 'stop_target; rm -rf "$WORK"' EXIT

# One process may hold at most 20,000 open files here; the server needs one per session.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -p resume-server -p loadgen >&2
BIN=target/release
LOADGEN=$BIN/loadgen
export RESUME_JWT_SECRET=$SECRET

wait_for_port() {
    local port=$1 deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ((SECONDS > deadline)); then echo "nothing listens on $port" >&2; exit 1; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "target died; see $OUT/*.log" >&2; exit 1; fi
        sleep 0.1
    done
}

start_server() { # $1: log name
    local data="$WORK/data-$1"
    RESUME_LISTEN=127.0.0.1:$SERVER_PORT RESUME_DATA_DIR=$data RESUME_MAX_SESSIONS=$SESSIONS \
        RESUME_MAX_CONNECTIONS=$((SESSIONS + 256)) \
        "$BIN/resume-server" 2>"$OUT/$1.log" &
    SERVER_PID=$!
    wait_for_port "$SERVER_PORT"
}

start_sink() { # $1: log name
    "$BIN/bare_sink" --listen "127.0.0.1:$SINK_PORT" 2>"$OUT/$1.log" &
    SERVER_PID=$!
    wait_for_port "$SINK_PORT"
}

stop_target() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

crowd=(--viewers "$SESSIONS" --duration "$DURATION" --processes "$PROCESSES" --connect-rate "$CONNECT_RATE" --max-connecting "$MAX_CONNECTING")

for run in $(seq 1 "$RUNS"); do
    echo "== run $run of $RUNS" >&2

    echo "-- 1 + 5: $SESSIONS sessions on the server, then a reconnect storm" >&2
    start_server "server-sessions-$run"
    $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${crowd[@]}" \
        --storm --out "$OUT/sessions-server-$run.json"
    stop_target

    echo "-- 2: the same sessions on the bare sink" >&2
    start_sink "sink-sessions-$run"
    $LOADGEN sessions --addr 127.0.0.1:$SINK_PORT --server-pid "$SERVER_PID" "${crowd[@]}" \
        --target bare-sink --check-every 0 --out "$OUT/sessions-bare-$run.json"
    stop_target

    echo "-- 3 + 4: $SESSIONS viewers posting progress every 4 s, then lookups" >&2
    start_server "server-http-$run"
    $LOADGEN http --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${crowd[@]}" \
        --interval-ms 4000 --out "$OUT/http-server-$run.json"
    $LOADGEN lookup --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" \
        --concurrency "$LOOKUP_CONCURRENCY" --duration "$LOOKUP_SECONDS" --users "$SESSIONS" \
        --out "$OUT/lookup-server-$run.json"
    stop_target

    echo "-- 4: lookups against the constant-body handler" >&2
    start_sink "sink-lookup-$run"
    $LOADGEN lookup --addr 127.0.0.1:$SINK_PORT --server-pid "$SERVER_PID" \
        --concurrency "$LOOKUP_CONCURRENCY" --duration "$LOOKUP_SECONDS" --users "$SESSIONS" \
        --target bare-sink --out "$OUT/lookup-bare-$run.json"
    stop_target

    echo "-- 6: the embedded store alone" >&2
    $LOADGEN store --data-dir "$WORK/store-max-$run" --writers 1024 --duration "$STORE_SECONDS" \
        --out "$OUT/store-max-$run.json"
    $LOADGEN store --data-dir "$WORK/store-paced-$run" --writers "$SESSIONS" \
        --rate "$((SESSIONS / 4))" --duration "$STORE_SECONDS" --out "$OUT/store-paced-$run.json"
done

{
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
    echo "SESSIONS=$SESSIONS DURATION=$DURATION RUNS=$RUNS PROCESSES=$PROCESSES reports in $OUT"
    echo
    $LOADGEN table --dir "$OUT"
} | tee "$OUT/table.md"

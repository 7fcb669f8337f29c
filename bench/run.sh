#!/usr/bin/env bash
# Runs the eight benchmark scenarios of docs/BENCHMARKS.md against a release build and prints one table.
#
#   bench/run.sh                          # full run: 19,000 sessions, 60 s plateau, 2 runs
#   SESSIONS=2000 DURATION=10 RUNS=1 bench/run.sh   # quick run
#   SCENARIOS=7 RUNS=5 bench/run.sh       # only the Cassandra scenario, five times
#   SCENARIOS=soak RUNS=1 bench/run.sh    # the soak: $SESSIONS sessions for $SOAK_SECONDS (bench/soak.sh)
#   bench/ab.sh <rev> <rev>               # two commits' builds, alternating (BIN_DIR, FIRST_RUN)
#
# Everything listens on 127.0.0.1; every process this script starts is stopped by
# pid, on error and interrupt too. Reports land in $OUT (default
# target/bench-results/<timestamp>) as JSON, with the servers' logs, and
# `loadgen table` turns them into the table.
set -euo pipefail

SESSIONS=${SESSIONS:-19000}     # concurrent sessions / viewers per scenario
DURATION=${DURATION:-60}        # plateau seconds of scenarios 1-3
RUNS=${RUNS:-2}                 # repetitions; the table shows medians
# Which blocks run: 1 (with the storm, 5), 2, 3 (with 4's lookups on the server), 4 (the
# constant-body lookups), 6, 7, 8 (lookups while sessions tick, server and sink), and
# `soak` (not by default: $SESSIONS sessions for $SOAK_SECONDS, sampled every $SAMPLE_EVERY s).
SCENARIOS=${SCENARIOS:-1 2 3 4 6 7 8}
SOAK_SECONDS=${SOAK_SECONDS:-1800}
SAMPLE_EVERY=${SAMPLE_EVERY:-60}
PROCESSES=${PROCESSES:-4}       # loadgen processes (each may hold < 20,000 sockets)
CONNECT_RATE=${CONNECT_RATE:-50000} # upgrades/s asked for; the server sets the pace
MAX_CONNECTING=${MAX_CONNECTING:-512}  # upgrades in flight; well below the listen backlog (4096)
LOOKUP_SECONDS=${LOOKUP_SECONDS:-20}
LOOKUP_CONCURRENCY=${LOOKUP_CONCURRENCY:-64}
TICKING_SESSIONS=${TICKING_SESSIONS:-10000} # scenario 8: sessions ticking under the lookups
# Scenario 8: VAR=value settings for its server, space-separated, e.g.
# RESUME_FLUSH_INTERVAL_MS=600000 to see the lookups beside ticks that write nothing.
TICKING_SERVER_SETTINGS=${TICKING_SERVER_SETTINGS:-}
STORE_SECONDS=${STORE_SECONDS:-10}
BIN_DIR=${BIN_DIR:-}            # prebuilt binaries of $BIN_COMMIT to run (bench/ab.sh); empty: build this checkout
FIRST_RUN=${FIRST_RUN:-1}       # number of the first run (reports are named by run)
ENGINE_BATCH=${ENGINE_BATCH:-120} # writes per commit of the paced store (scenario 6's figure)
SERVER_PORT=${SERVER_PORT:-18080}
SINK_PORT=${SINK_PORT:-18081}
SECRET=${SECRET:-bench-secret-bench-secret-bench-secret-0123}
# Scenario 7 runs scenario 1's load at this size three times: with no store writes, with the
# embedded store, and with the Cassandra store against the CQL test node.
CASSANDRA_SESSIONS=${CASSANDRA_SESSIONS:-$SESSIONS}
# The test node is one node and ignores both; these are the production shape.
CASSANDRA_CONSISTENCY=${CASSANDRA_CONSISTENCY:-local_quorum}
CASSANDRA_REPLICATION=${CASSANDRA_REPLICATION:-"{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"}

cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""
NODE_PID=""
trap 'stop_target; stop_node; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One process may hold at most 20,000 open files here; the server needs one per session.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The machine is shared: the table names the load before and after, and the code that ran.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -z $BIN_DIR ]]; then
    cargo build --release -p resume-server -p loadgen -p cql-test-node >&2
    COMMIT=$(git rev-parse --short=7 HEAD 2>/dev/null || echo "unknown (not a git checkout)")
    CHANGED=$(git status --porcelain 2>/dev/null | awk '{print $NF}' | tr '\n' ' ')
    BIN=target/release
else
    COMMIT=${BIN_COMMIT:-"unknown (prebuilt in $BIN_DIR)"}
    CHANGED=""
    BIN=$BIN_DIR
fi
LOADGEN=$BIN/loadgen
export RESUME_JWT_SECRET=$SECRET

refuse_busy_port() { # another listener would be measured instead of ours
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "something already listens on 127.0.0.1:$1; set SERVER_PORT / SINK_PORT" >&2
        exit 1
    fi
}

wait_for_port() {
    local port=$1 deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ((SECONDS > deadline)); then echo "nothing listens on $port" >&2; exit 1; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "target died; see $OUT/*.log" >&2; exit 1; fi
        sleep 0.1
    done
}

start_server() { # $1: log name; further arguments: VAR=value settings for the server
    local data="$WORK/data-$1" log=$1
    shift
    refuse_busy_port "$SERVER_PORT"
    env RESUME_LISTEN=127.0.0.1:$SERVER_PORT RESUME_DATA_DIR="$data" RESUME_MAX_SESSIONS=$SESSIONS \
        RESUME_MAX_CONNECTIONS=$((SESSIONS + 256)) "$@" \
        "$BIN/resume-server" 2>"$OUT/$log.log" &
    SERVER_PID=$!
    wait_for_port "$SERVER_PORT"
}

# The CQL test node on free ports; sets NODE_PID, NODE_CQL and NODE_CONTROL.
start_node() { # $1: log name
    # A new file each time: the shell truncates it only once the node's process has forked.
    local ports="$WORK/ports-$1" deadline=$((SECONDS + 30))
    "$BIN/cql-test-node" --listen 127.0.0.1:0 --control 127.0.0.1:0 >"$ports" 2>"$OUT/$1.log" &
    NODE_PID=$!
    until grep -qs '"control"' "$ports"; do
        if ((SECONDS > deadline)) || ! kill -0 "$NODE_PID" 2>/dev/null; then
            echo "the CQL test node did not start; see $OUT/$1.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    # One line: {"cql":"127.0.0.1:<port>","control":"127.0.0.1:<port>"}
    NODE_CQL=$(sed -n 's/.*"cql":"\([^"]*\)".*/\1/p' "$ports")
    NODE_CONTROL=$(sed -n 's/.*"control":"\([^"]*\)".*/\1/p' "$ports")
    if [[ -z "$NODE_CQL" || -z "$NODE_CONTROL" ]]; then
        echo "unexpected first line from the CQL test node: $(head -c 200 "$ports")" >&2
        exit 1
    fi
}

stop_node() {
    if [[ -n "$NODE_PID" ]]; then
        kill -TERM "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
        NODE_PID=""
    fi
}

start_sink() { # $1: log name
    refuse_busy_port "$SINK_PORT"
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

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

crowd=(--viewers "$SESSIONS" --duration "$DURATION" --processes "$PROCESSES" --connect-rate "$CONNECT_RATE" --max-connecting "$MAX_CONNECTING")
small_crowd=(--viewers "$CASSANDRA_SESSIONS" --duration "$DURATION" --processes "$PROCESSES" --connect-rate "$CONNECT_RATE" --max-connecting "$MAX_CONNECTING")
small_server=(RESUME_MAX_SESSIONS="$CASSANDRA_SESSIONS" RESUME_MAX_CONNECTIONS=$((CASSANDRA_SESSIONS + 256)))

scenario_1() {
    echo "-- 1 + 5: $SESSIONS sessions on the server, then a reconnect storm" >&2
    start_server "server-sessions-$run"
    $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${crowd[@]}" \
        --storm --out "$OUT/sessions-server-$run.json"
    stop_target
}

scenario_2() {
    echo "-- 2: the same sessions on the bare sink" >&2
    start_sink "sink-sessions-$run"
    $LOADGEN sessions --addr 127.0.0.1:$SINK_PORT --server-pid "$SERVER_PID" "${crowd[@]}" \
        --target bare-sink --check-every 0 --out "$OUT/sessions-bare-$run.json"
    stop_target
}

scenario_3() {
    echo "-- 3 + 4: $SESSIONS viewers posting progress every 4 s, then lookups" >&2
    start_server "server-http-$run"
    $LOADGEN http --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${crowd[@]}" \
        --interval-ms 4000 --out "$OUT/http-server-$run.json"
    $LOADGEN lookup --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" \
        --concurrency "$LOOKUP_CONCURRENCY" --duration "$LOOKUP_SECONDS" --users "$SESSIONS" \
        --out "$OUT/lookup-server-$run.json"
    stop_target
}

scenario_4() {
    echo "-- 4: lookups against the constant-body handler" >&2
    start_sink "sink-lookup-$run"
    $LOADGEN lookup --addr 127.0.0.1:$SINK_PORT --server-pid "$SERVER_PID" \
        --concurrency "$LOOKUP_CONCURRENCY" --duration "$LOOKUP_SECONDS" --users "$SESSIONS" \
        --target bare-sink --out "$OUT/lookup-bare-$run.json"
    stop_target
}

scenario_6() {
    echo "-- 6: the embedded store alone" >&2
    $LOADGEN store --data-dir "$WORK/store-max-$run" --writers 1024 --duration "$STORE_SECONDS" \
        --out "$OUT/store-max-$run.json"
    # Paced with the default commit delay, then with 5 ms (the default before 25):
    # what the delay buys in CPU per write and costs in latency.
    $LOADGEN store --data-dir "$WORK/store-paced-$run" --writers "$SESSIONS" \
        --rate "$((SESSIONS / 4))" --duration "$STORE_SECONDS" --out "$OUT/store-paced-$run.json"
    $LOADGEN store --data-dir "$WORK/store-delay5-$run" --writers "$SESSIONS" --commit-delay-ms 5 \
        --rate "$((SESSIONS / 4))" --duration "$STORE_SECONDS" --out "$OUT/store-delay5-$run.json"
    # The engine on trial: redb against fjall on the same write pattern, at the
    # batch size the paced store sees and at the largest batch.
    $LOADGEN engines --data-dir "$WORK/engines-paced-$run" --keys "$SESSIONS" --batch "$ENGINE_BATCH" \
        --duration "$STORE_SECONDS" --out "$OUT/engines-paced-$run.json"
    $LOADGEN engines --data-dir "$WORK/engines-max-$run" --keys "$SESSIONS" --batch 4096 \
        --duration "$STORE_SECONDS" --out "$OUT/engines-max-$run.json"
}

scenario_7() {
    echo "-- 7: $CASSANDRA_SESSIONS sessions with no store writes, the embedded store, Cassandra (the CQL test node)" >&2
    # The session path alone: a flush interval longer than the run, so nothing is written
    # until the sessions close.
    start_server "server-nowrites-$run" "${small_server[@]}" RESUME_FLUSH_INTERVAL_MS=600000
    $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${small_crowd[@]}" \
        --target nowrites --out "$OUT/sessions-nowrites-$run.json"
    stop_target
    start_server "server-embedded-$run" "${small_server[@]}"
    $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${small_crowd[@]}" \
        --target embedded --out "$OUT/sessions-embedded-$run.json"
    stop_target
    start_node "cql-node-$run"
    start_server "server-cassandra-$run" "${small_server[@]}" RESUME_STORE=cassandra \
        RESUME_CASSANDRA_NODES="$NODE_CQL" RESUME_INIT_SCHEMA=true RESUME_CASSANDRA_DEVELOPMENT=true \
        RESUME_CASSANDRA_REPLICATION="$CASSANDRA_REPLICATION" \
        RESUME_CASSANDRA_CONSISTENCY="$CASSANDRA_CONSISTENCY"
    # Only the server's CPU and RSS are billed; the node's are reported apart.
    $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${small_crowd[@]}" \
        --store-pid "$NODE_PID" --store-control "$NODE_CONTROL" \
        --target cassandra --out "$OUT/sessions-cassandra-$run.json"
    stop_target # first, so that its last writes still reach the node
    stop_node
}

scenario_8() {
    echo "-- 8: lookups while $TICKING_SESSIONS sessions tick, on the server and on the bare sink" >&2
    local ticking=(--viewers "$TICKING_SESSIONS" --duration "$LOOKUP_SECONDS" --processes "$PROCESSES"
        --connect-rate "$CONNECT_RATE" --max-connecting "$MAX_CONNECTING"
        --lookup-concurrency "$LOOKUP_CONCURRENCY")
    local first=server second=bare
    if ((run % 2 == 0)); then first=bare second=server; fi
    for target in $first $second; do
        if [[ $target == server ]]; then
            # shellcheck disable=SC2086 # one word per setting
            start_server "server-ticking-$run" $TICKING_SERVER_SETTINGS
            $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" "${ticking[@]}" \
                --out "$OUT/ticking-server-$run.json"
        else
            start_sink "sink-ticking-$run"
            $LOADGEN sessions --addr 127.0.0.1:$SINK_PORT --server-pid "$SERVER_PID" "${ticking[@]}" \
                --target bare-sink --check-every 0 --out "$OUT/ticking-bare-$run.json"
        fi
        stop_target
    done
}

scenario_soak() {
    echo "-- soak: $SESSIONS sessions for $SOAK_SECONDS s on the embedded store" >&2
    start_server "server-soak-$run"
    $LOADGEN sessions --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" \
        --viewers "$SESSIONS" --duration "$SOAK_SECONDS" --processes "$PROCESSES" \
        --connect-rate "$CONNECT_RATE" --max-connecting "$MAX_CONNECTING" \
        --sample-every "$SAMPLE_EVERY" --store-dir "$WORK/data-server-soak-$run" \
        --out "$OUT/soak-server-$run.json"
    stop_target
}

# The server and the bare sink alternate which goes first from run to run, so
# that neither always meets a machine its predecessor just warmed (or loaded).
for run in $(seq "$FIRST_RUN" $((FIRST_RUN + RUNS - 1))); do
    echo "== run $run (of $FIRST_RUN–$((FIRST_RUN + RUNS - 1)))" >&2
    if ((run % 2)); then order="1 2 3 4 6 7 8 soak"; else order="2 1 4 3 6 7 8 soak"; fi
    for scenario in $order; do
        if wants "$scenario"; then "scenario_$scenario"; fi
    done
done

{
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
    echo "Load average (1/5/15 min) before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Commit: $COMMIT${CHANGED:+ with uncommitted changes to: $CHANGED}"
    echo "SCENARIOS=\"$SCENARIOS\" SESSIONS=$SESSIONS DURATION=$DURATION RUNS=$RUNS PROCESSES=$PROCESSES" \
        "TICKING_SESSIONS=$TICKING_SESSIONS${TICKING_SERVER_SETTINGS:+ TICKING_SERVER_SETTINGS=\"$TICKING_SERVER_SETTINGS\"} SOAK_SECONDS=$SOAK_SECONDS CASSANDRA_SESSIONS=$CASSANDRA_SESSIONS CASSANDRA_CONSISTENCY=$CASSANDRA_CONSISTENCY reports in $OUT"
    echo
    $LOADGEN table --dir "$OUT"
} | tee "$OUT/table.md"

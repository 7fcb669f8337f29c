#!/usr/bin/env bash
# What a live session holds on the heap, by allocation site: the release server
# (embedded store, default settings) and then the bare sink, each under valgrind's
# massif with $SESSIONS sessions ticking 1/s. Once every session is live and the
# sessions have ticked $TICKS_PER_SESSION times each (every session has been
# written and acknowledged at least once), `vgdb` takes a detailed snapshot of the
# live heap, and bench/heap_sites.py divides it by allocation site and session.
#
#   bench/heap.sh                   # 2,000 sessions on each
#   SESSIONS=500 bench/heap.sh      # quicker
#
# RSS (scenarios 1 and 2 of bench/run.sh) is the figure the targets use; this
# says which allocation a byte of it belongs to. Needs valgrind (Debian package
# `valgrind`, which brings vgdb). Everything listens on 127.0.0.1 and every process
# started here is stopped by pid, on error and interrupt too.
set -euo pipefail

SESSIONS=${SESSIONS:-2000}
TICKS_PER_SESSION=${TICKS_PER_SESSION:-8}
DEADLINE_SECONDS=${DEADLINE_SECONDS:-300}  # per target, from start to snapshot
SERVER_PORT=${SERVER_PORT:-18080}
SINK_PORT=${SINK_PORT:-18081}
SECRET=${SECRET:-bench-secret-bench-secret-bench-secret-0123}

cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-results/heap-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
TARGET_PID=""
LOADGEN_PID=""
stop() { # the load first, so the target sees its sessions end
    local pid
    for pid in $LOADGEN_PID $TARGET_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    LOADGEN_PID="" TARGET_PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

command -v valgrind >/dev/null && command -v vgdb >/dev/null || {
    echo "needs valgrind and vgdb (apt-get install valgrind)" >&2
    exit 1
}
cargo build --release -p resume-server -p loadgen >&2
COMMIT=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
CHANGED=$(git status --porcelain 2>/dev/null | awk '{print $NF}' | tr '\n' ' ')
export RESUME_JWT_SECRET=$SECRET

# A counter from the target's /metrics (0 while it does not answer).
metric() { # $1: port, $2: name
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2; found=1} END {if (!found) print 0}'
}

measure() { # $1: name, $2: port, rest: the target's command line
    local name=$1 port=$2 start ticks
    shift 2
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "something already listens on 127.0.0.1:$port" >&2
        exit 1
    fi
    start=$SECONDS
    valgrind --tool=massif --threshold=0.1 --vgdb=yes --vgdb-prefix="$WORK/vgdb-$name" \
        --massif-out-file="$WORK/$name-exit.massif" "$@" 2>"$OUT/$name.log" &
    TARGET_PID=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        ((SECONDS - start < DEADLINE_SECONDS)) || { echo "$name did not start" >&2; exit 1; }
        sleep 0.2
    done
    target/release/loadgen sessions --addr "127.0.0.1:$port" --viewers "$SESSIONS" \
        --duration "$DEADLINE_SECONDS" --connect-rate 500 --max-connecting 16 --check-every 0 \
        --target "$name" --out "$WORK/$name-loadgen.json" 2>"$OUT/$name-loadgen.log" &
    LOADGEN_PID=$!
    until [[ $(metric "$port" resume_live_sessions) == "$SESSIONS" ]]; do
        ((SECONDS - start < DEADLINE_SECONDS)) || { echo "$name: sessions did not all connect" >&2; exit 1; }
        sleep 0.5
    done
    ticks=$(($(metric "$port" resume_ticks_received_total) + SESSIONS * TICKS_PER_SESSION))
    until (($(metric "$port" resume_ticks_received_total) >= ticks)); do
        ((SECONDS - start < DEADLINE_SECONDS)) || { echo "$name: ticks did not arrive" >&2; exit 1; }
        sleep 0.5
    done
    vgdb --vgdb-prefix="$WORK/vgdb-$name" --pid="$TARGET_PID" detailed_snapshot "$OUT/$name.massif" >/dev/null
    stop
    python3 bench/heap_sites.py "$OUT/$name.massif" "$SESSIONS" | tee "$OUT/$name.txt"
}

echo "commit $COMMIT${CHANGED:+ (uncommitted: $CHANGED)}, $SESSIONS sessions, snapshot after $TICKS_PER_SESSION ticks each" | tee "$OUT/README.txt"
echo "-- resume-server" >&2
# Settings through the environment: valgrind would not follow an `env` wrapper's exec.
export RESUME_LISTEN=127.0.0.1:$SERVER_PORT RESUME_DATA_DIR=$WORK/data \
    RESUME_MAX_SESSIONS=$SESSIONS RESUME_MAX_CONNECTIONS=$((SESSIONS + 256))
measure server "$SERVER_PORT" target/release/resume-server
unset RESUME_LISTEN RESUME_DATA_DIR RESUME_MAX_SESSIONS RESUME_MAX_CONNECTIONS
echo "-- bare sink" >&2
measure sink "$SINK_PORT" target/release/bare_sink --listen "127.0.0.1:$SINK_PORT"
python3 bench/heap_sites.py --compare "$OUT/server.massif" "$OUT/sink.massif" "$SESSIONS" | tee "$OUT/compare.txt"
echo "snapshots and tables in $OUT" >&2

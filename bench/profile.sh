#!/usr/bin/env bash
# Where the server's CPU goes under scenario 1's load: a release server (embedded
# store, default settings, plus any VAR=value given as arguments), $SESSIONS sessions
# ticking 1/s, and `perf record -e cpu-clock` on the server alone for $SECONDS_SAMPLED
# seconds once every session is live. Prints the share of samples per thread and the
# heaviest symbols; the raw perf data stays in $OUT.
#
# LOAD=lookups profiles the read path instead: $USERS viewers save a position over
# HTTP, then `loadgen lookup` runs GET /api/v1/stream at concurrency 64 while perf
# samples with DWARF call graphs, and the report adds the heaviest functions with
# their callees included (where a request's time goes, layer by layer).
#
#   bench/profile.sh                                   # 19,000 sessions, default flush
#   bench/profile.sh RESUME_FLUSH_INTERVAL_MS=600000   # the session path alone
#   LOAD=lookups SECONDS_SAMPLED=10 bench/profile.sh   # the lookups of scenario 4
set -euo pipefail

SESSIONS=${SESSIONS:-19000}
SECONDS_SAMPLED=${SECONDS_SAMPLED:-30}
PROCESSES=${PROCESSES:-4}
SERVER_PORT=${SERVER_PORT:-18080}
SECRET=${SECRET:-bench-secret-bench-secret-bench-secret-0123}
LOAD=${LOAD:-sessions}             # sessions | lookups
USERS=${USERS:-1000}               # LOAD=lookups: viewers with a saved position

cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-results/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""
LOAD_PID=""
cleanup() { # a load that already ended must not keep the server from being stopped
    local pid
    for pid in $LOAD_PID $SERVER_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
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

if [[ $LOAD == lookups ]]; then
    target/release/loadgen http --addr 127.0.0.1:$SERVER_PORT --viewers "$USERS" --duration 3 \
        --interval-ms 1000 --check-every 0 --out "$OUT/seed.json" >"$OUT/loadgen.log" 2>&1
    target/release/loadgen lookup --addr 127.0.0.1:$SERVER_PORT --server-pid "$SERVER_PID" \
        --concurrency 64 --duration $((SECONDS_SAMPLED + 4)) --users "$USERS" \
        --out "$OUT/lookup.json" >>"$OUT/loadgen.log" 2>&1 &
    LOAD_PID=$!
    sleep 2
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$OUT/perf.data" \
        -- sleep "$SECONDS_SAMPLED" 2>"$OUT/perf-record.log"
    wait "$LOAD_PID"
    LOAD_PID=""
else
    # Long enough for the ramp, the sampled window and a margin; killed afterwards.
    target/release/loadgen sessions --addr 127.0.0.1:$SERVER_PORT --viewers "$SESSIONS" \
        --processes "$PROCESSES" --duration $((SECONDS_SAMPLED + 30)) --target profile \
        --out "$OUT/sessions.json" >"$OUT/loadgen.log" 2>&1 &
    LOAD_PID=$!
    all_live() { [[ "$(metric resume_live_sessions)" == "$SESSIONS" ]]; }
    wait_until "$SESSIONS live sessions" all_live
    # One flush interval for the sessions' writes to reach their steady rhythm.
    sleep 5
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$OUT/perf.data" \
        -- sleep "$SECONDS_SAMPLED" 2>"$OUT/perf-record.log"
fi

# `head` closes the report's pipe early, which must not end the script.
set +o pipefail
{
    if [[ $LOAD == lookups ]]; then
        echo "Commit: $(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown); settings: ${*:-defaults}; lookups at concurrency 64 over $USERS viewers"
    else
        echo "Commit: $(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown); settings: ${*:-defaults}; $SESSIONS sessions"
    fi
    echo
    echo "Samples per thread:"
    perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
    echo
    echo "Heaviest symbols (self):"
    perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40
} | tee "$OUT/profile.txt"

# Callees included: the share of the server's CPU under each function.
perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' >"$OUT/children.txt" || true
layer() { # $1: label; $2: a pattern naming the layer's functions (their shares add up)
    printf '  %-66s %5.2f%%\n' "$1" "$(grep -E -- "$2" "$OUT/children.txt" \
        | awk '{sub("%", "", $1); sum += $1} END {print sum + 0}')"
}
if [[ $LOAD == lookups ]]; then
    {
        echo
        echo "Server CPU under each layer of a lookup (callees included):"
        layer "writing responses to the socket (writev)" 'TcpStream as tokio::io::async_write::AsyncWrite>::poll_write_vectored$'
        layer "reading and parsing requests" 'Conn<I,B,T>::poll_read_head$'
        layer "the handler's position read (registry + store)" 'AppParts::current_position(::\{\{closure\}\})?$'
        layer "  of which the store's get" 'EmbeddedStore as resume_server::store::PositionStore>::get(::\{\{closure\}\})?$'
        layer "    of which opening a read transaction and its tables" 'ReadTransaction::open_table$|as redb::db::ReadableDatabase>::begin_read$'
        layer "verifying the token (HMAC, base64, claims)" 'resume_server::auth::AuthKeys::verify$'
        layer "the router's per-request service clone" 'boxed_clone_sync::CloneService<R>>::clone_box$'
        layer "encoding the response head" 'Http1Transaction>::encode$'
    } | tee -a "$OUT/profile.txt"
else
    {
        echo
        echo "Server CPU under each part of a session's life (callees included):"
        layer "reading and parsing ticks (tungstenite)" 'WebSocketStream<T> as futures_core::stream::Stream>::poll_next$'
        # The compiler may inline these into their callers; perf then names them "… (inlined)".
        layer "the actor's handling of a tick" 'SessionActor::on_message$|\] on_message \(inlined\)$'
        layer "sending frames: \`saved\` acknowledgements (socket writes)" 'resume_server::session::actor::send::\{\{closure\}\}$'
        layer "starting a store write on the session's side" 'SessionActor::write_future$|SessionActor::write_future::\{\{closure\}\}$'
        # The thread's entry, whether or not Writer::run was inlined into it.
        layer "the store's writer thread (commits, fsync, replies)" '\] __rust_begin_short_backtrace<resume_server::store::embedded::'
        layer "  of which the commit (redb, incl. its fsync)" 'WriteTransaction::commit_with$'
        layer "    of which fsync" '\[k\] __x64_sys_fdatasync$'
        layer "  of which publishing the read view" 'LatestSnapshot::refresh$'
        layer "the runtime between tasks (epoll, parking, timers)" 'worker::Context::park_internal$'
    } | tee -a "$OUT/profile.txt"
fi

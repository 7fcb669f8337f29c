#!/usr/bin/env bash
# A/B: the same benchmark scenarios on two commits' builds, one run of each per
# round, the commit that goes first alternating by round, so that neither always
# meets a machine the other just warmed (or loaded).
#
#   bench/ab.sh acdd124 HEAD                        # scenarios 1 and 4 (as 3 + 4), 3 rounds
#   SCENARIOS="2 4" ROUNDS=5 bench/ab.sh HEAD~1 HEAD # the bare sink's sessions and lookups
#
# Each commit is built once (release, in a temporary worktree sharing this
# checkout's target dir, so only what changed is rebuilt) into $OUT/bin-<commit>/.
# Every other setting of bench/run.sh (SESSIONS, DURATION, …) applies. Reports of
# each commit land in $OUT/<commit>/ (one per round, named by round as
# bench/run.sh names runs), with its table; `bench/spread.py $OUT/<commit>`
# gives the median and spread of each.
set -euo pipefail

if (($# != 2)); then
    echo "usage: bench/ab.sh <commit A> <commit B>" >&2
    exit 2
fi
ROUNDS=${ROUNDS:-3}
export SCENARIOS=${SCENARIOS:-1 3}

cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-results/ab-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
TREES=$(mktemp -d)
trap 'git worktree remove --force "$TREES/tree" 2>/dev/null || true; rm -rf "$TREES"' EXIT

commits=("$(git rev-parse --short=7 "$1^{commit}")" "$(git rev-parse --short=7 "$2^{commit}")")
if [[ ${commits[0]} == "${commits[1]}" ]]; then
    echo "both revisions are commit ${commits[0]}" >&2
    exit 2
fi
for commit in "${commits[@]}"; do
    echo "== building $commit" >&2
    git worktree add --detach "$TREES/tree" "$commit" >&2
    CARGO_TARGET_DIR="$PWD/target" cargo build --release --manifest-path "$TREES/tree/Cargo.toml" \
        -p resume-server -p loadgen -p cql-test-node >&2
    mkdir -p "$OUT/bin-$commit"
    for bin in resume-server loadgen bare_sink cql-test-node; do
        cp "target/release/$bin" "$OUT/bin-$commit/"
    done
    git worktree remove --force "$TREES/tree"
done

for round in $(seq 1 "$ROUNDS"); do
    order=("${commits[@]}")
    if ((round % 2 == 0)); then order=("${commits[1]}" "${commits[0]}"); fi
    for commit in "${order[@]}"; do
        echo "== round $round of $ROUNDS: $commit" >&2
        BIN_DIR="$OUT/bin-$commit" BIN_COMMIT="$commit" FIRST_RUN=$round RUNS=1 \
            OUT="$OUT/$commit" bench/run.sh >/dev/null
    done
done

for commit in "${commits[@]}"; do
    echo
    echo "## $commit"
    bench/spread.py "$OUT/$commit"
done | tee "$OUT/ab.md"

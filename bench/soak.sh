#!/usr/bin/env bash
# The soak: 19,000 sessions ticking for 30 minutes against a release server on
# the embedded store, the server sampled every minute. Reports RSS, CPU per
# tick and the store's size on disk at the start and the end of the window
# (and their growth per hour) in the table of bench/run.sh.
#
#   bench/soak.sh                                  # 19,000 sessions, 30 min
#   SESSIONS=2000 SOAK_SECONDS=120 SAMPLE_EVERY=10 bench/soak.sh   # a short one
#
# A short version runs in CI: crates/loadgen/tests/smoke.rs
# (`a_short_soak_samples_the_server_and_looks_up_while_ticking`).
set -euo pipefail
export SCENARIOS=soak RUNS=1
exec "$(dirname "$0")/run.sh"

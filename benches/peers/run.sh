#!/usr/bin/env bash
# Measures tokenvault against the peer token stores, in one run on this machine:
#   Globus SDK SQLiteTokenStorage and JSONTokenStorage (Python), the Sharetribe integration
#   SDK's fileStore (Node), and tokenvault (benches/bench_peers.rs, release build) with
#   durable and with buffered puts.
# Same workload everywhere: 2,000 token records over 10 namespaces, stored one per call,
# then each read back once. Every store runs REPS times (default 3), back to back and
# interleaved, and the table shows the medians. Prints one Markdown table (also saved to
# target/peers/results.md; the raw JSON lines go to target/peers/results-<time>.jsonl).
#
# Environment: REPS (default 3); GET_SAMPLE (default 100: the Globus gets timed on that many
# records, since each of their gets decodes a whole namespace or file and costs the same;
# 0 times all 2,000, which adds several minutes). No token value is printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
peers="$target/peers"
REPS="${REPS:-3}"
GET_SAMPLE="${GET_SAMPLE:-100}"

say() { printf 'run.sh: %s\n' "$*" >&2; }

started=$SECONDS
bash "$here/install.sh"
installed=$SECONDS

say "building benches/bench_peers (bench profile: release)"
cargo bench --quiet --no-run --bench bench_peers --manifest-path "$root/Cargo.toml"
built=$SECONDS

results="$peers/results-$(date +%Y%m%d-%H%M%S).jsonl"
: >"$results"
export NODE_PATH="$peers/node/node_modules"
timed() { # NAME COMMAND...: runs COMMAND, appends its JSON line to $results
    local name="$1" t0=$SECONDS
    shift
    "$@" >>"$results" || { say "error: $name failed"; exit 1; }
    say "  $name: $((SECONDS - t0)) s"
}
for rep in $(seq 1 "$REPS"); do
    say "run $rep of $REPS"
    timed "tokenvault" cargo bench --quiet --bench bench_peers --manifest-path "$root/Cargo.toml"
    timed "sharetribe fileStore" node "$here/sharetribe_bench.js"
    timed "globus SQLiteTokenStorage" \
        "$peers/python/bin/python" "$here/globus_bench.py" --storage sqlite --get-sample "$GET_SAMPLE"
    timed "globus JSONTokenStorage" \
        "$peers/python/bin/python" "$here/globus_bench.py" --storage json --get-sample "$GET_SAMPLE"
done
measured=$SECONDS

echo
"$peers/python/bin/python" "$here/report.py" "$results" | tee "$peers/results.md"
echo
say "install $((installed - started)) s, build $((built - installed)) s, measurements $((measured - built)) s, total $((SECONDS - started)) s"
say "raw results: $results"

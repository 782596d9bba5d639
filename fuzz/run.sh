#!/usr/bin/env bash
# Builds every fuzz target, then runs each for ${FUZZ_SECONDS:-60} seconds, one after
# another (CI: `bash fuzz/run.sh`, 60 s each). Each run starts from fuzz/seeds/<target> and
# whatever fuzz/corpus/<target> already holds; new inputs go to fuzz/corpus/<target>.
#
# Exits non-zero if any target crashes, times out (-timeout, seconds per input) or goes over
# -rss_limit_mb. The failing input is written to fuzz/artifacts/<target>/: minimise it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz tmin <target> <file>`, then copy it into
# tests/regressions/<target>/ so that plain `cargo test` (tests/engine/fuzz_regressions.rs) replays it.
#
# A target with a libFuzzer dictionary, fuzz/<target>.dict, is run with it.
#
# Environment: FUZZ_SECONDS (per target), FUZZ_TARGETS (space-separated subset).
# cargo-fuzz wants a nightly compiler; RUSTC_BOOTSTRAP=1 lets the stable one accept its flags.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-record header payload open_vault ops response import}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "=== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "=== cargo fuzz build (all targets)"
cargo fuzz build

status=0
summary=()
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  extra=()
  if [ "$t" = ops ]; then
    # Operation sequences need length: libFuzzer's default length control keeps inputs at a
    # few dozen bytes (about ten operations) for many minutes.
    extra=(-len_control=0 -max_len=600)
  fi
  if [ -f "fuzz/$t.dict" ]; then
    extra+=("-dict=$PWD/fuzz/$t.dict")
  fi
  echo "=== fuzzing $t for ${seconds}s"
  if cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      "${extra[@]}" >"$log" 2>&1; then
    result="ok"
  else
    result="FAILED"
    status=1
    echo "--- $t failed; end of its log ($log):"
    grep -v '^#[0-9]' "$log" | tail -n 60
    ls -l "fuzz/artifacts/$t" | grep -v last-run.log || true
  fi
  # libFuzzer's final stats line ("#N DONE cov: .. ft: .. corp: ..") or, after a crash,
  # the last status line it printed.
  stats="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
  rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)"
  rss="$(grep -E '^stat::peak_rss_mb' "$log" | awk '{print $2}' || true)"
  corpus="$(find "fuzz/corpus/$t" -type f | wc -l)"
  line="$t: $result | $stats | execs ${execs:-?} (${rate:-?}/s), peak rss ${rss:-?} MB, corpus $corpus files"
  echo "$line"
  summary+=("$line")
done

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$status"

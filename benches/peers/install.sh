#!/usr/bin/env bash
# Installs the peer token stores that benches/peers/run.sh measures tokenvault against:
#   - globus-sdk (Python, PyPI) in a venv at target/peers/python
#   - sharetribe-flex-integration-sdk (Node, npm) at target/peers/node
# Everything goes under the cargo target directory, so nothing is committed and `cargo clean`
# removes it. Idempotent: a peer already installed at the pinned version is skipped.
# The pins match the versions that wrote tests/data/peer-token-files/ (see its README.md).
set -euo pipefail

GLOBUS_PIN="4.9.1"             # else the newest 4.x
SHARETRIBE_PIN="1.14.1"        # else the newest 1.x

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
peers="${CARGO_TARGET_DIR:-$root/target}/peers"
venv="$peers/python"
node_dir="$peers/node"
mkdir -p "$peers"

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in python3 node npm; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (needed for the peer benchmarks)"
done

# ---- Python: globus-sdk ----------------------------------------------------------------------
globus_version() { "$venv/bin/python" -c 'import globus_sdk; print(globus_sdk.__version__)' 2>/dev/null; }

installed=""
if [[ -x "$venv/bin/python" ]]; then installed="$(globus_version || true)"; fi
if [[ -n "$installed" && -f "$venv/.pin" && "$(cat "$venv/.pin")" == "$GLOBUS_PIN" ]]; then
    say "globus-sdk $installed already installed in $venv (skipping)"
else
    if [[ ! -x "$venv/bin/python" ]]; then
        say "creating a Python venv at $venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (is the venv module installed?)"
    fi
    pip_opts=(--disable-pip-version-check --quiet --retries 1 --timeout 20)
    say "installing globus-sdk==$GLOBUS_PIN from PyPI"
    if ! "$venv/bin/pip" install "${pip_opts[@]}" "globus-sdk==$GLOBUS_PIN"; then
        say "globus-sdk $GLOBUS_PIN not installable; trying the newest 4.x"
        "$venv/bin/pip" install "${pip_opts[@]}" "globus-sdk>=4,<5" \
            || die "could not install globus-sdk from PyPI (offline, or the registry unreachable?)"
    fi
    installed="$(globus_version)" || die "globus-sdk installed but does not import"
    echo "$GLOBUS_PIN" >"$venv/.pin"
    say "installed globus-sdk $installed (pin $GLOBUS_PIN) in $venv"
fi
GLOBUS_INSTALLED="$installed"

# ---- Node: sharetribe-flex-integration-sdk -------------------------------------------------------
sharetribe_version() {
    node -e 'console.log(require(process.argv[1]).version)' \
        "$node_dir/node_modules/sharetribe-flex-integration-sdk/package.json" 2>/dev/null
}

installed="$(sharetribe_version || true)"
if [[ -n "$installed" && -f "$node_dir/.pin" && "$(cat "$node_dir/.pin")" == "$SHARETRIBE_PIN" ]]; then
    say "sharetribe-flex-integration-sdk $installed already installed in $node_dir (skipping)"
else
    mkdir -p "$node_dir"
    [[ -f "$node_dir/package.json" ]] \
        || printf '{\n  "name": "tokenvault-bench-peers",\n  "private": true\n}\n' >"$node_dir/package.json"
    npm_opts=(--prefix "$node_dir" --save-exact --no-audit --no-fund --loglevel=error
              --fetch-retries=1 --fetch-timeout=20000)
    say "installing sharetribe-flex-integration-sdk@$SHARETRIBE_PIN from npm"
    if ! npm install "${npm_opts[@]}" "sharetribe-flex-integration-sdk@$SHARETRIBE_PIN" >&2; then
        say "sharetribe-flex-integration-sdk $SHARETRIBE_PIN not installable; trying the newest 1.x"
        npm install "${npm_opts[@]}" "sharetribe-flex-integration-sdk@^1" >&2 \
            || die "could not install sharetribe-flex-integration-sdk from npm (offline, or the registry unreachable?)"
    fi
    installed="$(sharetribe_version)" || die "sharetribe-flex-integration-sdk installed but not found"
    echo "$SHARETRIBE_PIN" >"$node_dir/.pin"
    say "installed sharetribe-flex-integration-sdk $installed (pin $SHARETRIBE_PIN) in $node_dir"
fi
SHARETRIBE_INSTALLED="$installed"

say "ready: globus-sdk $GLOBUS_INSTALLED (python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')), sharetribe-flex-integration-sdk $SHARETRIBE_INSTALLED (node $(node --version))"

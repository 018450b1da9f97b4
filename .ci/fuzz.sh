#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short, bounded time (FUZZ_SECONDS each, default 30),
# starting from the corpus under fuzz/corpus/ (new inputs go to target/fuzz-corpus/).
# Installs cargo-fuzz if missing.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets this machine's stable toolchain
# accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
    # New inputs go to a scratch corpus under target/, so that a run leaves the committed
    # corpus (fuzz/corpus, read as a seed) as it was.
    scratch="target/fuzz-corpus/$target"
    mkdir -p "fuzz/corpus/$target" "$scratch"
    echo "fuzz: $target for ${seconds}s"
    log=$(mktemp)
    if ! cargo fuzz run "$target" "$scratch" "fuzz/corpus/$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED (crash input under fuzz/artifacts/$target)"
        exit 1
    fi
    grep -E '^Done [0-9]+ runs|cov: ' "$log" | tail -n 2
    rm -f "$log"
done
echo "fuzz: all targets clean"

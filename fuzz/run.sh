#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, each from its committed seeds
# (fuzz/seeds/<target>) plus what earlier runs here found (fuzz/corpus,
# not committed). A crash, a hang of one input (-timeout) or an allocation
# over 64 MiB (fuzz/src/lib.rs) stops the run with a non-zero exit and
# leaves the input in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 45 s, all targets)
#
# cargo-fuzz is installed from crates.io into ~/.cache/topicbus/cargo-fuzz
# when missing. The targets are built without a sanitizer (`-s none`):
# topicbus's read path is safe Rust, what is looked for is panics, aborts,
# stack overflows, hangs and huge allocations, and that needs no nightly
# toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_ROOT="$HOME/.cache/topicbus/cargo-fuzz"
export PATH="$CARGO_FUZZ_ROOT/bin:$PATH"
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install --locked --root "$CARGO_FUZZ_ROOT" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

seconds="${1:-45}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s none
for target in "${targets[@]}"; do
    corpus="$PWD/fuzz/corpus/$target"
    mkdir -p "$corpus"
    options=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
    if [ -f "fuzz/$target.dict" ]; then
        options+=(-dict="$PWD/fuzz/$target.dict")
    fi
    log="$(mktemp)"
    if ! cargo fuzz run -s none "$target" "$corpus" "$PWD/fuzz/seeds/$target" -- "${options[@]}" >"$log" 2>&1; then
        grep -m 1 -A 4 -E 'panicked at|fuzz: an allocation|overflowed its stack|ERROR: libFuzzer' "$log" || true
        tail -n 30 "$log"
        echo "fuzz $target: FAILED; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    coverage="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
    echo "fuzz $target: ${runs:-?} inputs in ${seconds} s, $coverage, no crash"
    rm -f "$log"
done

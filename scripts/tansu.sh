#!/usr/bin/env bash
# Installs (once, cached) and starts the Kafka-protocol broker tansu for the
# Kafka tests. Prints the broker address on stdout; logs go to $TANSU_LOG.
#
#   scripts/tansu.sh install                    # build and install if not cached; prints the binary's path
#   scripts/tansu.sh start [PORT] [STORAGE]     # install if needed, start in the background, wait until it listens
#   scripts/tansu.sh stop                       # stop the broker started by `start` (SIGTERM), wait until it is gone
#   scripts/tansu.sh kill                       # SIGKILL it, as a crash would
#
# STORAGE is `memory` (default), `sqlite` (durable, TANSU_DIR/tansu.db: it
# survives `kill` and a new `start ... sqlite`) or any tansu storage URL
# (also settable as TANSU_STORAGE). sqlite paths are relative to TANSU_DIR.
#
# tansu is built from its crates.io sources with scripts/tansu-0.6.0-fetch.patch
# applied to tansu-storage (README "The suite on tansu" has the details): 0.6.0
# answers a fetch from inside a record batch with the batches after it (a
# consumer resuming from a committed offset skips the rest of that batch),
# returns batches past one not stored yet, answers a fetch for a topic it
# cannot find with a zero topic id and a leader hint (on which librdkafka 2.12
# crashes), and answers ListOffsets "latest" and "by time" wrongly.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
TANSU_PATCH="$HERE/tansu-$TANSU_VERSION-fetch.patch"
# The cache directory names the patch's contents, so a changed patch rebuilds.
TANSU_PATCH_ID="$(git hash-object "$TANSU_PATCH" | cut -c1-12)"
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/topicbus/tansu-$TANSU_VERSION-$TANSU_PATCH_ID}"
TANSU_DIR="${TANSU_DIR:-${TMPDIR:-/tmp}/topicbus-tansu}"
TANSU_LOG="${TANSU_LOG:-$TANSU_DIR/tansu.log}"
TANSU_STORAGE="${TANSU_STORAGE:-memory://tansu/}"
BIN="$TANSU_ROOT/bin/tansu"

install() {
    if [ -x "$BIN" ]; then
        return
    fi
    echo "building tansu $TANSU_VERSION (patched) into $TANSU_ROOT (about 10 minutes on 2 cores)" >&2
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/topicbus-tansu-build.XXXXXX")"
    # Cargo downloads the two source crates from whatever registry it is set
    # up for; a package that only asks for them is enough.
    mkdir -p "$work/fetch/src"
    touch "$work/fetch/src/lib.rs"
    cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "topicbus-tansu-sources"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tansu = "=$TANSU_VERSION"
tansu-storage = "=$TANSU_VERSION"
EOF
    cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
    local crate file
    for crate in tansu tansu-storage; do
        file="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$TANSU_VERSION.crate" | head -n 1)"
        tar -xzf "$file" -C "$work"
    done
    (cd "$work/tansu-storage-$TANSU_VERSION" && git apply -p1 "$TANSU_PATCH")
    cat >>"$work/tansu-$TANSU_VERSION/Cargo.toml" <<EOF

[patch.crates-io]
tansu-storage = { path = "../tansu-storage-$TANSU_VERSION" }
EOF
    # The crate's own Cargo.lock pins every other dependency; only the
    # patched tansu-storage changes source.
    cargo build --release --manifest-path "$work/tansu-$TANSU_VERSION/Cargo.toml" \
        --features dynostore,libsql --target-dir "$work/target" >&2
    mkdir -p "$TANSU_ROOT/bin"
    cp "$work/target/release/tansu" "$BIN.tmp"
    mv "$BIN.tmp" "$BIN"
    rm -rf "$work"
}

start() {
    local port="${1:-19092}"
    case "${2:-}" in
        "") ;;
        memory) TANSU_STORAGE="memory://tansu/" ;;
        sqlite) TANSU_STORAGE="sqlite://tansu.db" ;;
        *) TANSU_STORAGE="$2" ;;
    esac
    install
    mkdir -p "$TANSU_DIR"
    stop_quietly
    (
        cd "$TANSU_DIR"
        nohup "$BIN" broker \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$port" \
            --storage-engine "$TANSU_STORAGE" >"$TANSU_LOG" 2>&1 &
        echo $! >"$TANSU_DIR/tansu.pid"
    )
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "127.0.0.1:$port"
            return
        fi
        sleep 0.1
    done
    echo "tansu did not listen on 127.0.0.1:$port; log:" >&2
    cat "$TANSU_LOG" >&2
    exit 1
}

stop_quietly() {
    local signal="${1:-TERM}"
    if [ -f "$TANSU_DIR/tansu.pid" ]; then
        local pid
        pid="$(cat "$TANSU_DIR/tansu.pid")"
        kill "-$signal" "$pid" 2>/dev/null || true
        # Gone before returning, so a new `start` can take the port at once.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        rm -f "$TANSU_DIR/tansu.pid"
    fi
}

case "${1:-}" in
    install) install; echo "$BIN" ;;
    start) shift; start "$@" ;;
    stop) stop_quietly ;;
    kill) stop_quietly KILL ;;
    *) echo "usage: $0 install | start [PORT] [memory|sqlite|URL] | stop | kill" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Installs (once, cached) and starts the Kafka-protocol broker tansu for the
# Kafka tests. Prints the broker address on stdout; logs go to $TANSU_LOG.
#
#   scripts/tansu.sh install                    # build and install if not cached
#   scripts/tansu.sh start [PORT] [STORAGE]     # install if needed, start in the background, wait until it listens
#   scripts/tansu.sh stop                       # stop the broker started by `start` (SIGTERM), wait until it is gone
#   scripts/tansu.sh kill                       # SIGKILL it, as a crash would
#
# STORAGE is `memory` (default), `sqlite` (durable, TANSU_DIR/tansu.db: it
# survives `kill` and a new `start ... sqlite`) or any tansu storage URL
# (also settable as TANSU_STORAGE). sqlite paths are relative to TANSU_DIR.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/topicbus/tansu-$TANSU_VERSION}"
TANSU_DIR="${TANSU_DIR:-${TMPDIR:-/tmp}/topicbus-tansu}"
TANSU_LOG="${TANSU_LOG:-$TANSU_DIR/tansu.log}"
TANSU_STORAGE="${TANSU_STORAGE:-memory://tansu/}"
BIN="$TANSU_ROOT/bin/tansu"

install() {
    if [ -x "$BIN" ]; then
        return
    fi
    echo "building tansu $TANSU_VERSION into $TANSU_ROOT (about 10 minutes on 2 cores)" >&2
    cargo install tansu --locked --version "$TANSU_VERSION" \
        --features dynostore,libsql --root "$TANSU_ROOT" >&2
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
    install) install ;;
    start) shift; start "$@" ;;
    stop) stop_quietly ;;
    kill) stop_quietly KILL ;;
    *) echo "usage: $0 install | start [PORT] [memory|sqlite|URL] | stop | kill" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Prints the path of a Python with this folder's requirements installed: a
# virtualenv under ~/.cache/topicbus (outside the work tree, so CI and later
# runs reuse it), made anew only when requirements.txt changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
venv="${TOPICBUS_PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/topicbus/peers-venv-$hash}"
if [ ! -f "$venv/.installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
        -r "$here/requirements.txt" >&2
    touch "$venv/.installed"
fi
echo "$venv/bin/python"

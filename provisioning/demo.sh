#!/usr/bin/env bash
# Builds fogd and the shipped functions, fetches LiteRT's runtime, then runs the agent on
# provisioning/demo.toml until Ctrl-C. Watch the log: CPU alerts, and SYN-flood mitigations
# from the ddos-detector function, every few seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "==> installing python3-pip (to download LiteRT's runtime)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
if models/fetch-runtime.sh; then
    export FOGD_LITERT_LIB="$root/models/runtime/$(uname -m)/libLiteRt.so"
else
    echo "demo.sh: no LiteRT runtime; fogd runs, and ddos-detector reports inference unavailable" >&2
fi
wasi-functions/build.sh --quiet >/dev/null
cargo build --release --quiet -p fogd
exec target/release/fogd run --config provisioning/demo.toml

#!/usr/bin/env bash
# Builds fogd and the shipped functions, then runs the agent on provisioning/demo.toml
# until Ctrl-C. Watch the log: alerts and heartbeats are published every few seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
wasi-functions/build.sh --quiet >/dev/null
cargo build --release --quiet -p fogd
exec target/release/fogd run --config provisioning/demo.toml

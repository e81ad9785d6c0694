#!/usr/bin/env bash
# Builds every function in this workspace to a wasm32-wasip2 component in
# target/wasm32-wasip2/release/<name>.wasm (dashes become underscores).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cd "$here"
cargo build --release --target wasm32-wasip2 "$@"
ls -l target/wasm32-wasip2/release/*.wasm

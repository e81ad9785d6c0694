#!/usr/bin/env bash
# Runs a cross-built fogd under qemu-user: `fogd --version`, `fogd invoke` of the shipped
# echo function with its expected output, and a short cold-start bench beside the native
# build, so the ratio is on record (qemu timings are not hardware timings).
#
#   cross/smoke.sh aarch64|armv7      (after cross/build.sh and wasi-functions/build.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
case "${1:-}" in
    aarch64) triple=aarch64-unknown-linux-gnu; qemu=qemu-aarch64; sysroot=/usr/aarch64-linux-gnu ;;
    armv7) triple=armv7-unknown-linux-gnueabihf; qemu=qemu-arm; sysroot=/usr/arm-linux-gnueabihf ;;
    *) echo "usage: cross/smoke.sh aarch64|armv7" >&2; exit 2 ;;
esac
if ! command -v "$qemu" >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi
cd "$root"
binary="target/$triple/dist/fogd"
echo_wasm="wasi-functions/target/wasm32-wasip2/release/echo.wasm"
fogd() { "$qemu" -L "$sysroot" "$binary" "$@"; }

version="$(fogd --version)"
[ "$version" = "fogd $(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"name":"fogd","version":"\([^"]*\)".*/\1/p')" ] || {
    echo "smoke ($1): unexpected version output: $version" >&2; exit 1; }
echo "smoke ($1): $version"

output="$(fogd invoke --component "$echo_wasm" --payload "hello from $1" 2>/dev/null)"
[ "$output" = "hello from $1" ] || { echo "smoke ($1): invoke returned: $output" >&2; exit 1; }
echo "smoke ($1): invoke echo ok"

emulated="$(fogd bench cold-start --component "$echo_wasm" --iterations 500 --warmup 50 --json 2>/dev/null)"
echo "smoke ($1): cold start under qemu: $emulated"
if [ -x target/release/fogd ]; then
    native="$(target/release/fogd bench cold-start --component "$echo_wasm" --iterations 500 --warmup 50 --json 2>/dev/null)"
    echo "smoke ($1): cold start native:     $native"
fi
ls -l "$binary" | awk -v arch="$1" '{print "smoke (" arch "): binary size " $5 " bytes"}'

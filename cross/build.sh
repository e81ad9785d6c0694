#!/usr/bin/env bash
# Cross-builds fogd for a gateway architecture with the size-tuned `dist` profile.
#
#   cross/build.sh aarch64      # aarch64-unknown-linux-gnu, guests compiled by Cranelift
#   cross/build.sh armv7        # armv7-unknown-linux-gnueabihf, guests run on Pulley
#
# Installs the rustup target and the Debian cross compiler when missing. The binary lands in
# target/<triple>/dist/fogd.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
case "${1:-}" in
    aarch64) triple=aarch64-unknown-linux-gnu; gcc=aarch64-linux-gnu-gcc; packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    armv7) triple=armv7-unknown-linux-gnueabihf; gcc=arm-linux-gnueabihf-gcc; packages="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
    *) echo "usage: cross/build.sh aarch64|armv7" >&2; exit 2 ;;
esac
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
if ! command -v "$gcc" >/dev/null; then
    as_root apt-get update -qq
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
export "CARGO_TARGET_${upper}_LINKER=$gcc"
cd "$root"
cargo build --profile dist --target "$triple" -p fogd --bin fogd "${@:2}"
ls -l "target/$triple/dist/fogd"

#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine with the Rust toolchain (Debian
# packages, rustup targets, LiteRT's runtime library from the ai-edge-litert wheel), then runs
# all of it: formatting check, the guest functions, every test against real components, and
# the aarch64 and armv7 cross builds run under qemu (cross/ installs its own compilers and
# qemu-user).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Each step says how long the run has taken so far, so slow steps show in CI logs.
step() { echo "==> $* (at $((SECONDS / 60))m$((SECONDS % 60))s)"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the tests start or call.
packages=(mosquitto mosquitto-clients snmp snmpd snmptrapd systemd python3-pip nginx bsdutils rsyslog openssl softflowd pmacct)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Tests start their own brokers and file servers on free ports; keep the packaged ones from
# holding their ports.
for service in mosquitto nginx; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
        as_root systemctl stop "$service" || true
    fi
done

step "rust targets"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

step "LiteRT runtime (ai-edge-litert wheel)"
models/fetch-runtime.sh

step "formatting"
cargo fmt --all --check
(cd wasi-functions && cargo fmt --all --check)

step "guest functions"
wasi-functions/build.sh --quiet >/dev/null
# Their pure logic, natively (probe is wasm-only: it reads the guest's own memory).
(cd wasi-functions && cargo test --quiet --target "$(rustc -vV | sed -n 's/^host: //p')" \
    -p fogd-sdk -p threshold-alert -p ddos-detector -p login-watch -p config-drift -p predictive-maintenance -p traffic-optimizer)

step "tests"
cargo test --release --workspace --no-fail-fast

for arch in aarch64:arm64 armv7:armhf; do
    step "${arch%:*} cross build, qemu smoke test and .deb"
    cross/build.sh "${arch%:*}" --quiet
    cross/smoke.sh "${arch%:*}"
    dpkg-deb --info "$(cross/deb.sh "${arch#*:}")" | grep -E "Package|Architecture|Version"
done
step "done"

#!/usr/bin/env bash
# Installs fogd on a Debian-like system: binary, systemd unit, default config, shipped
# functions and model, the `fogd` user and its directories. Safe to run again (an existing
# /etc/fogd/fogd.toml is kept).
#
#   provisioning/install.sh [--binary PATH] [--root DIR]
#   provisioning/install.sh --uninstall [--purge] [--root DIR]
#
# --root stages everything under DIR (no user is created, systemd is not told).
# --uninstall keeps /etc/fogd and /var/lib/fogd; --purge removes them and the user too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root=""
binary="$here/../target/release/fogd"
functions="$here/../wasi-functions/target/wasm32-wasip2/release"
action=install
purge=no
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --uninstall) action=uninstall; shift ;;
        --purge) purge=yes; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

bin_dir="$root/usr/bin"
unit_dir="$root/lib/systemd/system"
config_dir="$root/etc/fogd"
share_dir="$root/usr/share/fogd"
state_dir="$root/var/lib/fogd"
systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

if [ "$action" = uninstall ]; then
    systemd_running && systemctl disable --now fogd.service 2>/dev/null || true
    rm -f "$bin_dir/fogd" "$unit_dir/fogd.service"
    rm -rf "$share_dir"
    if [ "$purge" = yes ]; then
        rm -rf "$config_dir" "$state_dir"
        [ -z "$root" ] && getent passwd fogd >/dev/null && userdel fogd
    fi
    systemd_running && systemctl daemon-reload || true
    echo "fogd removed${purge/no/ (config and state kept)}"
    exit 0
fi

[ -x "$binary" ] || { echo "install.sh: no fogd binary at $binary (cargo build --release, or --binary PATH)" >&2; exit 1; }
install -d -m 0755 "$bin_dir" "$unit_dir" "$config_dir" "$share_dir/functions" "$share_dir/models"
install -m 0755 "$binary" "$bin_dir/fogd"
install -m 0644 "$here/fogd.service" "$unit_dir/fogd.service"
if [ ! -e "$config_dir/fogd.toml" ]; then
    install -m 0644 "$here/fogd.toml" "$config_dir/fogd.toml"
fi
for wasm in "$functions"/echo.wasm "$functions"/threshold_alert.wasm "$functions"/ddos_detector.wasm; do
    [ -e "$wasm" ] && install -m 0644 "$wasm" "$share_dir/functions/"
done
for model in flow-anomaly.tflite reference.json MODEL_CARD.md; do
    install -m 0644 "$here/../models/flow-anomaly/$model" "$share_dir/models/"
done
if [ -z "$root" ]; then
    getent group fogd >/dev/null || groupadd --system fogd
    getent passwd fogd >/dev/null || useradd --system --gid fogd --home-dir /var/lib/fogd --no-create-home --shell /usr/sbin/nologin fogd
    install -d -m 0750 -o fogd -g fogd "$state_dir"
else
    install -d -m 0750 "$state_dir"
fi
if systemd_running; then
    systemctl daemon-reload
    echo "fogd installed: systemctl enable --now fogd"
else
    echo "fogd installed under ${root:-/}"
fi

#!/usr/bin/env bash
# Packages fogd as a .deb for one architecture: the binary, the systemd unit, the default
# config (a conffile), the shipped functions and model, and maintainer scripts that create
# the `fogd` user and its state directory. LiteRT is not bundled: fogd finds it in
# /usr/lib/fogd/libLiteRt.so when installed there (models/fetch-runtime.sh --dest).
#
#   cross/deb.sh amd64 [--binary PATH]     # default: target/release/fogd
#   cross/deb.sh arm64 [--binary PATH]     # default: target/aarch64-unknown-linux-gnu/dist/fogd
#   cross/deb.sh armhf [--binary PATH]     # default: target/armv7-unknown-linux-gnueabihf/dist/fogd
#
# The package lands in target/deb/fogd_<version>_<arch>.deb.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${1:-}"
case "$arch" in
    amd64) binary="$root/target/release/fogd" ;;
    arm64) binary="$root/target/aarch64-unknown-linux-gnu/dist/fogd" ;;
    armhf) binary="$root/target/armv7-unknown-linux-gnueabihf/dist/fogd" ;;
    *) echo "usage: cross/deb.sh amd64|arm64|armhf [--binary PATH]" >&2; exit 2 ;;
esac
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        *) echo "deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$binary" ] || { echo "deb.sh: no binary at $binary" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$root/provisioning/install.sh" --root "$stage" --binary "$binary" >/dev/null
rm -rf "$stage/var"
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: fogd
Version: $version
Architecture: $arch
Maintainer: fogd developers <fogd@users.noreply.github.com>
Section: net
Priority: optional
Depends: adduser, systemd
Installed-Size: $(du -sk "$stage" | cut -f1)
Homepage: https://github.com/fogd/fogd
Description: edge node agent hosting WebAssembly network functions
 fogd runs WASI network functions on MQTT messages, SNMP traps and polls and
 timers, with state, MQTT publishing and local TFLite inference (LiteRT, not
 bundled: install libLiteRt.so in /usr/lib/fogd to enable it).
CONTROL
echo "/etc/fogd/fogd.toml" > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent group fogd >/dev/null || addgroup --system fogd
    getent passwd fogd >/dev/null || adduser --system --ingroup fogd --home /var/lib/fogd --no-create-home --shell /usr/sbin/nologin fogd
    install -d -m 0750 -o fogd -g fogd /var/lib/fogd
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl disable --now fogd.service >/dev/null 2>&1 || true
fi
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/fogd
    getent passwd fogd >/dev/null && deluser --system fogd >/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$root/target/deb"
out="$root/target/deb/fogd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out" >/dev/null
echo "$out"

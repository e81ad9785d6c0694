#!/usr/bin/env bash
# Fetches LiteRT's runtime library (libLiteRt.so) from the ai-edge-litert wheel on PyPI.
#
#   models/fetch-runtime.sh                  # for this machine
#   models/fetch-runtime.sh --arch aarch64   # for an ARM64 gateway
#   models/fetch-runtime.sh --dest /usr/lib/fogd
#
# The library lands in <dest>/libLiteRt.so (default: models/runtime/<arch>/). Point fogd at
# it with `inference.runtime` in fogd.toml or FOGD_LITERT_LIB, or install it in
# /usr/lib/fogd/. Needs python3 with pip; nothing else of the wheel is kept.
set -euo pipefail

version=2.3.0
arch=$(uname -m)
dest=""
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="$2"; shift 2 ;;
        --dest) dest="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "fetch-runtime.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$arch" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) echo "fetch-runtime.sh: ai-edge-litert ships wheels for x86_64 and aarch64 only, not $arch" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
dest=${dest:-$here/runtime/$arch}
if [ -f "$dest/libLiteRt.so" ]; then
    echo "libLiteRt.so already in $dest"
    exit 0
fi

python=${PYTHON:-python3}
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "fetch-runtime.sh: needs pip for $python (Debian: apt-get install python3-pip)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading ai-edge-litert $version for $arch"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform "manylinux_2_27_$arch" --python-version 3.11 \
    -d "$work" "ai-edge-litert==$version"
mkdir -p "$dest"
"$python" - "$work" "$dest" <<'PY'
import glob, shutil, sys, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{work}/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("ai_edge_litert/libLiteRt.so") as src, open(f"{dest}/libLiteRt.so.part", "wb") as out:
    shutil.copyfileobj(src, out)
PY
mv "$dest/libLiteRt.so.part" "$dest/libLiteRt.so"
echo "libLiteRt.so -> $dest ($(du -h "$dest/libLiteRt.so" | cut -f1))"

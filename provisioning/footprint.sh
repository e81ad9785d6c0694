#!/usr/bin/env bash
# Measures fogd's footprint on this machine: start-up time to "fogd ready" (first start,
# which compiles the functions, and a restart, which loads them from the cache), then RSS
# and PSS (from /proc/PID/smaps_rollup) after a minute of light load. The load is the demo:
# five functions (the demo's four plus a second threshold-alert) on the embedded broker,
# timers publishing every 300-500 ms, and the flow-anomaly model loaded.
#
#   provisioning/footprint.sh [--seconds 60] [--binary target/release/fogd] [--keep-startup-pages]
#
# Pass --binary target/dist/fogd to measure the size-tuned build that packages ship, and
# --keep-startup-pages to measure with runtime.release_startup_pages off. Prints
# one JSON line: totals and PSS by what is mapped. Needs the built functions and LiteRT's
# runtime (provisioning/demo.sh fetches both).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=60
binary="$root/target/release/fogd"
release_startup_pages=true
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --keep-startup-pages) release_startup_pages=false; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "footprint.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
sed -e "s|\.\./|$root/|g" \
    -e "s|^state_dir = .*|state_dir = \"$work/state\"|" \
    -e 's|127.0.0.1:9464|127.0.0.1:0|' \
    -e 's|127.0.0.1:1883|127.0.0.1:18830|g' \
    "$root/provisioning/demo.toml" > "$work/fogd.toml"
cat >> "$work/fogd.toml" <<TOML

[runtime]
release_startup_pages = $release_startup_pages

[[function]]
name = "flow-threshold"
component = "$root/wasi-functions/target/wasm32-wasip2/release/threshold_alert.wasm"
grants = { publish = ["alerts/#"] }
config = { keys = ["packets"], alert_topic = "alerts/flows/{key}" }
[[function.trigger]]
mqtt = { topic = "flows/+", qos = 0 }
TOML
export FOGD_LITERT_LIB="$root/models/runtime/$(uname -m)/libLiteRt.so"
pid=""
# Starts fogd and prints the milliseconds until it logged "fogd ready".
start_fogd() {
    : > "$work/log"
    local start
    start=$(date +%s%N)
    NO_COLOR=1 "$binary" run --config "$work/fogd.toml" 2> "$work/log" &
    pid=$!
    until grep -q "fogd ready" "$work/log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
        sleep 0.002
    done
    echo $(( ($(date +%s%N) - start) / 1000000 ))
}
stop_fogd() { kill -TERM "$pid"; wait "$pid"; }

start_fogd > "$work/first"
stop_fogd
start_fogd > "$work/cached"
grep -q "functions=5" "$work/log" || { echo "not all five functions loaded:" >&2; cat "$work/log" >&2; exit 1; }
sleep "$seconds"
rss_kib=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
pss_kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
# Faults that had to read from disk: what paging out start-up's pages costs later.
major_faults=$(awk '{print $12}' "/proc/$pid/stat")
# PSS by what is mapped: fogd's own code, LiteRT (with the libstdc++ it pulls in), other
# shared libraries, compiled components, and anonymous memory (heap, stacks, guest memories).
breakdown=$(awk -v binary="$(readlink -f "$binary")" '
    /^[0-9a-f]+-[0-9a-f]+ / {
        path = $6
        if (path == binary) part = "binary"
        else if (path ~ /libLiteRt|libstdc\+\+/) part = "litert"
        else if (path ~ /\.so/) part = "libraries"
        else if (path ~ /\.cwasm$|memfd:wasm/) part = "components"
        else part = "anonymous"
    }
    /^Pss:/ { pss[part] += $2 }
    END {
        printf "\"pss_binary_kib\": %d, \"pss_litert_kib\": %d, \"pss_libraries_kib\": %d, \"pss_components_kib\": %d, \"pss_anonymous_kib\": %d",
            pss["binary"], pss["litert"], pss["libraries"], pss["components"], pss["anonymous"]
    }' "/proc/$pid/smaps")
printf '{"ready_first_ms": %d, "ready_cached_ms": %d, "rss_kib": %d, "pss_kib": %d, %s, "seconds": %d, "binary_bytes": %d, "major_faults": %d, "release_startup_pages": %s}\n' \
    "$(cat "$work/first")" "$(cat "$work/cached")" "$rss_kib" "$pss_kib" "$breakdown" "$seconds" "$(stat -c %s "$binary")" "$major_faults" "$release_startup_pages"
stop_fogd

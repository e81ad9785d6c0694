#!/usr/bin/env bash
# Measures how long a signed deployment takes to become the running revision on this
# machine: from the start of `fogd deploy` (verify, copy and check the artifacts, compile
# into the daemon's cache) to the daemon's "running deployment" line. The document holds
# the shipped functions (echo, threshold-alert, ddos-detector) and the flow-anomaly model
# with its reference vectors, on fogd's embedded broker. Each run deploys a new revision of
# the same files; the first one compiles the components, the others find them cached.
#
#   provisioning/bench-deploy.sh [--runs 5] [--binary target/release/fogd] [--fogctl target/release/fogctl]
#
# Prints one JSON line. Needs the built functions and LiteRT's runtime (provisioning/demo.sh
# fetches both) and python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=5
fogd="$root/target/release/fogd"
fogctl="$root/target/release/fogctl"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --binary) fogd="$2"; shift 2 ;;
        --fogctl) fogctl="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "bench-deploy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
functions="$root/wasi-functions/target/wasm32-wasip2/release"
mkdir -p "$work/artifacts"
cp "$functions/echo.wasm" "$functions/threshold_alert.wasm" "$functions/ddos_detector.wasm" \
    "$root/models/flow-anomaly/flow-anomaly.tflite" "$work/artifacts/"
cp "$root/models/flow-anomaly/reference.json" "$work/artifacts/flow-anomaly.reference.json"

"$fogctl" keygen --out "$work/fleet.key" >/dev/null
cat > "$work/fogd.toml" <<TOML
state_dir = "$work/state"
[metrics]
address = "127.0.0.1:0"
[embedded_broker]
listen = "127.0.0.1:18832"
[[broker]]
name = "local"
address = "127.0.0.1:18832"
protocol = "3.1.1"
[sync]
trusted_keys = ["$(cat "$work/fleet.key.pub")"]
TOML

# document REVISION: the deployment document, artifacts pinned by size and digest.
document() {
    python3 - "$1" "$work/artifacts" <<'PY'
import hashlib, json, os, sys
revision, folder = int(sys.argv[1]), sys.argv[2]
def pin(name):
    data = open(os.path.join(folder, name), "rb").read()
    return {"url": f"https://artifacts.example/{name}", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
names = ["echo.wasm", "threshold_alert.wasm", "ddos_detector.wasm", "flow-anomaly.tflite", "flow-anomaly.reference.json"]
print(json.dumps({
    "schema": "fogd.deployment/v1",
    "revision": revision,
    "artifacts": {name: pin(name) for name in names},
    "function": [
        {"name": "echo", "component": "echo.wasm", "output": "echo/{subject}",
         "trigger": [{"mqtt": {"topic": "ping/#", "qos": 1}}]},
        {"name": "threshold-alert", "component": "threshold_alert.wasm", "grants": {"publish": ["alerts/#"]},
         "trigger": [{"mqtt": {"topic": "telemetry/+", "qos": 1}}]},
        {"name": "ddos-detector", "component": "ddos_detector.wasm",
         "grants": {"publish": ["mitigation/#"], "models": ["flow-anomaly"]},
         "trigger": [{"mqtt": {"topic": "flows/+", "qos": 0}}]},
    ],
    "model": [{"name": "flow-anomaly", "version": str(revision), "path": "flow-anomaly.tflite",
               "reference": "flow-anomaly.reference.json"}],
    "health": {"window": "1s"},
}))
PY
}

export FOGD_LITERT_LIB="$root/models/runtime/$(uname -m)/libLiteRt.so"
NO_COLOR=1 "$fogd" run --config "$work/fogd.toml" 2> "$work/log" &
pid=$!
until grep -q "fogd ready" "$work/log"; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.002
done

times=()
for revision in $(seq 1 "$runs"); do
    document "$revision" > "$work/doc.json"
    "$fogctl" sign "$work/doc.json" --key "$work/fleet.key" --out "$work/signed.json" 2>/dev/null
    start=$(date +%s%N)
    "$fogd" deploy "$work/signed.json" --artifacts "$work/artifacts" --config "$work/fogd.toml" >/dev/null
    until grep -q "running deployment; watching it before committing revision=$revision " "$work/log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
        grep -q "rolled back.*revision=$revision" "$work/log" && { cat "$work/log" >&2; exit 1; }
        sleep 0.002
    done
    times+=($(( ($(date +%s%N) - start) / 1000000 )))
    until grep -q "deployment committed revision=$revision" "$work/log"; do sleep 0.01; done
done
grep -q "functions=3" "$work/log" || { echo "the deployed functions did not all load:" >&2; cat "$work/log" >&2; exit 1; }
sorted=$(printf '%s\n' "${times[@]:1}" | sort -n)
count=$(printf '%s\n' "$sorted" | wc -l)
median=$(printf '%s\n' "$sorted" | sed -n "$(( (count + 1) / 2 ))p")
printf '{"first_ms": %d, "cached_ms": [%s], "cached_median_ms": %d, "runs": %d}\n' \
    "${times[0]}" "$(IFS=,; echo "${times[*]:1}")" "$median" "$runs"
kill -TERM "$pid"; wait "$pid"

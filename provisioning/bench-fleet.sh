#!/usr/bin/env bash
# Rolls a signed document out to a simulated fleet through one Mosquitto and times it end
# to end: `fogctl rollout` with a canary and waves, from its start until every device
# reported the revision committed. The devices are in-process sync loops
# (controller/examples/fleet_sim.rs), each with its own MQTT connection, verifying and
# parsing the document with fogd's code and reporting every state as fogd does; they do not
# download or compile (bench-deploy.sh measures that on one device).
#
#   provisioning/bench-fleet.sh [--devices 1000] [--runs 3] [--canary 10] [--waves 10%,50%,100%]
#                               [--watch-ms 0]
#
# --watch-ms is each device's gate window before it commits (a real one is its document's
# health.window; every wave waits for it once).
#
# Prints one JSON line. Needs mosquitto and python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
devices=1000
runs=3
canary=10
waves="10%,50%,100%"
watch_ms=0
while [ $# -gt 0 ]; do
    case "$1" in
        --devices) devices="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --canary) canary="$2"; shift 2 ;;
        --waves) waves="$2"; shift 2 ;;
        --watch-ms) watch_ms="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench-fleet.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$root"
cargo build --release --quiet -p fogctl --bin fogctl --example fleet_sim
fogctl="$root/target/release/fogctl"
work=$(mktemp -d)
trap 'kill "${sim:-}" "${broker:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=""
[ "$(id -u)" -eq 0 ] && user="user root"
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
max_connections -1
$user
CONF
ulimit -n "$(ulimit -Hn)"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
"$fogctl" keygen --out "$work/fleet.key" >/dev/null
"$root/target/release/examples/fleet_sim" --broker "127.0.0.1:$port" --devices "$devices" \
    --trust "$work/fleet.key.pub" --watch-ms "$watch_ms" >"$work/sim.out" 2>"$work/sim.err" &
sim=$!
for _ in $(seq 600); do
    grep -q "^ready" "$work/sim.out" 2>/dev/null && break
    kill -0 "$sim" 2>/dev/null || { cat "$work/sim.err" >&2; exit 1; }
    sleep 0.1
done
grep -q "^ready" "$work/sim.out" || { echo "the simulated fleet did not come up" >&2; exit 1; }

times=()
for run in $(seq "$runs"); do
    python3 - "$root/fleet/schema/example-deployment.json" "$run" > "$work/doc.json" <<'PY'
import json, sys
document = json.load(open(sys.argv[1]))
document["revision"] = int(sys.argv[2])
print(json.dumps(document))
PY
    "$fogctl" sign "$work/doc.json" --key "$work/fleet.key" --out "$work/doc.signed.json" 2>/dev/null
    start=$(date +%s.%N)
    "$fogctl" rollout "$work/doc.signed.json" --broker "127.0.0.1:$port" --group sim \
        --canary "$canary" --waves "$waves" --wave-timeout 120s 2>"$work/rollout.log" \
        || { tail -20 "$work/rollout.log" >&2; exit 1; }
    end=$(date +%s.%N)
    times+=("$(python3 -c "print(round($end - $start, 2))")")
    grep -E "^done" "$work/rollout.log" >&2
done
python3 - "$devices" "$canary" "$waves" "$watch_ms" "${times[@]}" <<'PY'
import json, statistics, sys
devices, canary, waves, watch_ms = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
times = [float(t) for t in sys.argv[5:]]
print(json.dumps({"devices": devices, "canary": canary, "waves": waves, "watch_ms": watch_ms, "runs_s": times,
                  "median_s": statistics.median(times)}))
PY

#!/usr/bin/env bash
# Rolls a signed document out to a simulated fleet through one Mosquitto and times it end
# to end: `fogctl rollout` with a canary and waves, from its start until every device
# reported the revision committed. The devices are in-process sync loops
# (controller/examples/fleet_sim.rs), each with its own MQTT connection, verifying and
# parsing the document with fogd's code and reporting every state as fogd does; they do not
# download or compile (bench-deploy.sh measures that on one device).
#
#   provisioning/bench-fleet.sh [--devices 1000] [--runs 3] [--canary 10] [--waves 10%,50%,100%]
#                               [--watch-ms 0] [--wave-timeout 120s] [--fogctl PATH]
#
# --watch-ms is each device's gate window before it commits (a real one is its document's
# health.window; every wave waits for it once). --fogctl runs another fogctl build (an older
# one, to compare) instead of building this tree's.
#
# A run that does not end with every device committed is counted, its summary printed, and
# the next run goes on. Prints one JSON line: each run's time and outcome, the median of the
# runs that passed, fogctl's CPU time and peak memory per run, and the broker's CPU time per
# run and peak memory over all runs. Needs mosquitto and python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
devices=1000
runs=3
canary=10
waves="10%,50%,100%"
watch_ms=0
wave_timeout=120s
fogctl=""
while [ $# -gt 0 ]; do
    case "$1" in
        --devices) devices="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --canary) canary="$2"; shift 2 ;;
        --waves) waves="$2"; shift 2 ;;
        --watch-ms) watch_ms="$2"; shift 2 ;;
        --wave-timeout) wave_timeout="$2"; shift 2 ;;
        --fogctl) fogctl="$2"; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "bench-fleet.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$root"
cargo build --release --quiet -p fogctl --bin fogctl --example fleet_sim
fogctl=${fogctl:-$root/target/release/fogctl}
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

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
runs_json=()
for run in $(seq "$runs"); do
    python3 - "$root/fleet/schema/example-deployment.json" "$run" > "$work/doc.json" <<'PY'
import json, sys
document = json.load(open(sys.argv[1]))
document["revision"] = int(sys.argv[2])
print(json.dumps(document))
PY
    "$fogctl" sign "$work/doc.json" --key "$work/fleet.key" --out "$work/doc.signed.json" 2>/dev/null
    broker_before=$(cpu_ticks "$broker")
    # fogctl's wall time, CPU time and peak memory, from its own rusage.
    measured=$(python3 - "$fogctl" "$work/rollout.log" rollout "$work/doc.signed.json" \
        --broker "127.0.0.1:$port" --group sim --canary "$canary" --waves "$waves" \
        --wave-timeout "$wave_timeout" <<'PY'
import json, resource, subprocess, sys, time
start = time.monotonic()
with open(sys.argv[2], "w") as log:
    code = subprocess.call([sys.argv[1]] + sys.argv[3:], stderr=log)
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                  "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}))
PY
)
    broker_after=$(cpu_ticks "$broker")
    summary=$(grep -E "^(done|stopped)" "$work/rollout.log" || echo "no summary: $(tail -1 "$work/rollout.log")")
    echo "run $run: $summary" >&2
    if ! echo "$measured" | grep -q '"code": 0'; then
        grep -E "FAILED|never reached|broker connection" "$work/rollout.log" | head -5 >&2 || true
    fi
    runs_json+=("$(python3 - "$measured" "$broker_before" "$broker_after" "$(getconf CLK_TCK)" "$summary" <<'PY'
import json, sys
run = json.loads(sys.argv[1])
run["broker_cpu_s"] = round((int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]), 2)
run["summary"] = sys.argv[5]
print(json.dumps(run))
PY
)")
done
broker_peak_mb=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$broker/status")
dropped=$(grep -c "Outgoing messages are being dropped" "$work/mosquitto.log" || true)
python3 - "$devices" "$canary" "$waves" "$watch_ms" "$broker_peak_mb" "$dropped" "${runs_json[@]}" <<'PY'
import json, statistics, sys
devices, canary, waves, watch_ms = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
broker_peak_mb, dropped = float(sys.argv[5]), int(sys.argv[6])
runs = [json.loads(run) for run in sys.argv[7:]]
passed = [run["s"] for run in runs if run["code"] == 0]
print(json.dumps({"devices": devices, "canary": canary, "waves": waves, "watch_ms": watch_ms,
                  "runs": runs, "failed_runs": len(runs) - len(passed),
                  "median_s": statistics.median(passed) if passed else None,
                  "broker_peak_rss_mb": round(broker_peak_mb, 1),
                  "broker_drop_warnings": dropped}))
PY

#!/usr/bin/env bash
# Measures one model three ways on this machine and prints medians and ratios:
#   agent   fogd's registry calling LiteRT (what the host pays per call)
#   guest   a wasm function calling `inference::run-f32` (what a function sees)
#   python  the Python LiteRT interpreter on the same model and input (the baseline)
#
#   models/bench-infer.sh [--iterations N] [--model FILE --reference FILE]
#
# Builds fogd (release) and the shipped functions, fetches the runtime, and keeps a small
# virtual environment with ai-edge-litert in models/.bench-venv for the baseline.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
iterations=20000
model=$root/models/flow-anomaly/flow-anomaly.tflite
reference=$root/models/flow-anomaly/reference.json
while [ $# -gt 0 ]; do
    case "$1" in
        --iterations) iterations="$2"; shift 2 ;;
        --model) model="$2"; shift 2 ;;
        --reference) reference="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "bench-infer.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

"$root/models/fetch-runtime.sh" >/dev/null
runtime=$root/models/runtime/$(uname -m)/libLiteRt.so
(cd "$root" && cargo build --release --quiet -p fogd --bin fogd)
"$root/wasi-functions/build.sh" --quiet >/dev/null
venv=$root/models/.bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet ai-edge-litert==2.3.0
fi

fogd=$root/target/release/fogd
common=(--model "$model" --reference "$reference" --runtime "$runtime" --iterations "$iterations" --json)
agent=$("$fogd" bench infer "${common[@]}")
guest=$("$fogd" bench infer "${common[@]}" \
    --component "$root/wasi-functions/target/wasm32-wasip2/release/probe.wasm")
python=$("$venv/bin/python" "$root/models/bench_interpreter.py" "$model" \
    --reference "$reference" --iterations "$iterations")

python3 - "$agent" "$guest" "$python" <<'PY'
import json, sys
agent, guest, python = (json.loads(a) for a in sys.argv[1:])
print(f"{'':8} {'p50 µs':>8} {'p99 µs':>8} {'calls/s':>10} {'p50 vs python':>14}")
for name, s in (("agent", agent), ("guest", guest), ("python", python)):
    ratio = s["p50_us"] / python["p50_us"]
    print(f"{name:8} {s['p50_us']:8.2f} {s['p99_us']:8.2f} {s['per_second']:10.0f} {ratio:13.2f}x")
PY

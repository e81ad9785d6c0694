#!/usr/bin/env bash
# Retrains the shipped models: creates models/.venv (TensorFlow CPU, NumPy, LiteRT),
# trains flow-anomaly, equipment-health and link-forecast, quantizes them and rewrites their .tflite files,
# reference vectors and metrics, and the test fixtures in models/testdata. About a minute on two cores after the
# first install (~600 MB of wheels).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi
export TF_CPP_MIN_LOG_LEVEL=2
(cd "$here/flow-anomaly" && "$venv/bin/python" train.py)
(cd "$here/equipment-health" && "$venv/bin/python" train.py)
(cd "$here/link-forecast" && "$venv/bin/python" train.py)
"$venv/bin/python" "$here/testdata/make.py"

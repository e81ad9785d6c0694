"""Trains link-forecast, quantizes it to full int8 and writes the shipped files.

Run through ../train.sh. Outputs, next to this file:
  link-forecast.tflite        int8 weights, input and output (shipped)
  link-forecast-float.tflite  float32 reference of the same network
  reference.json              inputs and the int8 outputs of the Python LiteRT interpreter,
                              checked by fogd when the model loads
  metrics.json                held-out mean absolute error of float, int8 and the
                              last-value baseline
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402
from features import FEATURES, OUTPUTS, generate, last_value_baseline  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build(seed):
    return common.mlp("utilization", len(FEATURES), len(OUTPUTS), seed, None, "mae")


def mae(predicted, truth):
    return round(float(np.mean(np.abs(predicted - truth))), 4)


def main():
    x_train, y_train = generate(200_000, seed=1)
    x_test, y_test = generate(20_000, seed=2)
    model = build(3)
    model.fit(x_train, y_train, epochs=15, batch_size=512, validation_split=0.1, verbose=2)
    float_blob, int8_blob = common.export(HERE, "link-forecast", model, x_train[:2_000])

    rising = x_test[:, -1] - x_test[:, 0] > 0.2
    rows = list(x_test[rising][:8]) + list(x_test[~rising][:8])
    labels = ["rising"] * 8 + ["other"] * 8
    common.write_json(
        HERE,
        "reference.json",
        common.reference(int8_blob, "link-forecast.tflite", rows, labels, FEATURES, OUTPUTS),
    )

    baseline = last_value_baseline(x_test)
    float_pred = common.predict_float(float_blob, x_test)
    int8_pred = common.predict_int8(int8_blob, x_test)
    metrics = {
        "train_samples": int(len(y_train)),
        "test_samples": int(len(y_test)),
        "mae_float": mae(float_pred, y_test),
        "mae_int8": mae(int8_pred, y_test),
        "mae_last_value": mae(baseline, y_test),
        "mae_int8_rising": mae(int8_pred[rising], y_test[rising]),
        "mae_last_value_rising": mae(baseline[rising], y_test[rising]),
    }
    common.write_metrics(HERE, metrics, float_blob, int8_blob)


if __name__ == "__main__":
    main()

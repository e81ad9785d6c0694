"""Trains equipment-health, quantizes it to full int8 and writes the shipped files.

Run through ../train.sh. Outputs, next to this file:
  equipment-health.tflite        int8 weights, input and output (shipped)
  equipment-health-float.tflite  float32 reference of the same network
  reference.json                 inputs and the int8 outputs of the Python LiteRT
                                 interpreter, checked by fogd when the model loads
  metrics.json                   held-out accuracy of float, int8 and the threshold
                                 baseline, and of the failure/no-failure decision
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402
from features import CLASSES, FEATURES, generate, threshold_baseline  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build(seed):
    return common.mlp("health", len(FEATURES), len(CLASSES), seed, "softmax", "sparse_categorical_crossentropy")


def decision_scores(predicted, truth):
    """Accuracy of the class, and precision/recall of "will fail" (any failing class)."""
    failing, will_fail = predicted > 0, truth > 0
    true_positive = int(np.sum(failing & will_fail))
    return {
        "accuracy": round(float(np.mean(predicted == truth)), 4),
        "failure_precision": round(true_positive / max(int(failing.sum()), 1), 4),
        "failure_recall": round(true_positive / max(int(will_fail.sum()), 1), 4),
    }


def main():
    x_train, y_train, _ = generate(8_000, seed=1)
    x_test, y_test, raw_test = generate(1_000, seed=2)
    model = build(5)
    model.fit(x_train, y_train, epochs=20, batch_size=256, validation_split=0.1, verbose=2)
    float_blob, int8_blob = common.export(HERE, "equipment-health", model, x_train[:1_000])

    rows, labels = [], []
    for label in range(len(CLASSES)):
        for row in x_test[y_test == label][:4]:
            rows.append(row)
            labels.append(CLASSES[label])
    common.write_json(
        HERE,
        "reference.json",
        common.reference(int8_blob, "equipment-health.tflite", rows, labels, FEATURES, CLASSES),
    )

    float_pred = np.argmax(common.predict_float(float_blob, x_test), axis=1)
    int8_pred = np.argmax(common.predict_int8(int8_blob, x_test), axis=1)
    baseline_pred = threshold_baseline(raw_test)
    metrics = {
        "train_samples": int(len(y_train)),
        "test_samples": int(len(y_test)),
        "float": decision_scores(float_pred, y_test),
        "int8": decision_scores(int8_pred, y_test),
        "threshold_baseline": decision_scores(baseline_pred, y_test),
    }
    common.write_metrics(HERE, metrics, float_blob, int8_blob)


if __name__ == "__main__":
    main()

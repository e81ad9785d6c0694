"""Trains flow-anomaly, quantizes it to full int8 and writes the shipped files.

Run through ../train.sh, which creates the virtual environment. Outputs, next to
this file:
  flow-anomaly.tflite        int8 weights, int8 input and output (shipped)
  flow-anomaly-float.tflite  float32 reference of the same network
  flow-anomaly-v2.tflite     a second int8 version (other seed, wider layer),
                             used to exercise hot swap and shadow mode
  reference.json             inputs and the int8 outputs of the Python
                             LiteRT interpreter, for exact-match tests in Rust
  metrics.json               held-out accuracy float vs int8, sizes
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import convert, interpreter, quantize, run_int8, tf  # noqa: E402
from features import CLASSES, FEATURES, generate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build(hidden, seed):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(len(FEATURES),), name="features"),
            tf.keras.layers.Dense(hidden, activation="relu"),
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def accuracy_int8(blob, x, y):
    it = interpreter(blob)
    inp = it.get_input_details()[0]
    hits = sum(int(np.argmax(run_int8(it, quantize(row, inp))) == label) for row, label in zip(x, y))
    return hits / len(y)


def accuracy_float(blob, x, y):
    it = interpreter(blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    hits = 0
    for row, label in zip(x, y):
        it.set_tensor(inp["index"], row[None, :])
        it.invoke()
        hits += int(np.argmax(it.get_tensor(out["index"])[0]) == label)
    return hits / len(y)


def train_version(hidden, seed, x_train, y_train):
    model = build(hidden, seed)
    model.fit(x_train, y_train, epochs=12, batch_size=256, validation_split=0.1, verbose=2)
    return model


def write(name, blob):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(blob)


def main():
    x_train, y_train = generate(20_000, seed=1)
    x_test, y_test = generate(2_500, seed=2)
    representative = x_train[:1_000]

    model = train_version(32, 7, x_train, y_train)
    float_blob = convert(model)
    int8_blob = convert(model, representative)
    model_v2 = train_version(48, 11, x_train, y_train)
    v2_blob = convert(model_v2, representative)

    write("flow-anomaly-float.tflite", float_blob)
    write("flow-anomaly.tflite", int8_blob)
    write("flow-anomaly-v2.tflite", v2_blob)

    it = interpreter(int8_blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    cases = []
    for label in range(len(CLASSES)):
        for row in x_test[y_test == label][:8]:
            q = quantize(row, inp)
            cases.append(
                {
                    "class": CLASSES[label],
                    "input_f32": [round(float(v), 6) for v in row],
                    "input_i8": q.tolist(),
                    "output_i8": run_int8(it, q).tolist(),
                }
            )
    reference = {
        "model": "flow-anomaly.tflite",
        "input": {"shape": [1, len(FEATURES)], "scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])},
        "output": {"shape": [1, len(CLASSES)], "scale": float(out["quantization"][0]), "zero_point": int(out["quantization"][1])},
        "features": FEATURES,
        "classes": CLASSES,
        "cases": cases,
    }
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")

    metrics = {
        "train_samples": int(len(y_train)),
        "test_samples": int(len(y_test)),
        "accuracy_float": round(accuracy_float(float_blob, x_test, y_test), 4),
        "accuracy_int8": round(accuracy_int8(int8_blob, x_test, y_test), 4),
        "accuracy_int8_v2": round(accuracy_int8(v2_blob, x_test, y_test), 4),
        "bytes_float": len(float_blob),
        "bytes_int8": len(int8_blob),
        "bytes_int8_v2": len(v2_blob),
        "tensorflow": tf.__version__,
    }
    with open(os.path.join(HERE, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    json.dump(metrics, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

"""What the training scripts share: int8 conversion with LiteRT-compatible settings,
running the converted model, and the reference vectors fogd checks a model against when it
loads (inputs and the int8 outputs of the Python LiteRT interpreter, for exact matches).
"""

import json
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402


def mlp(input_name, inputs, outputs, seed, output_activation, loss):
    """The shipped networks' shape: inputs -> 32 -> 16 -> outputs, ReLU between."""
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(inputs,), name=input_name),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(outputs, activation=output_activation),
        ]
    )
    model.compile(optimizer="adam", loss=loss)
    return model


def convert(model, representative=None):
    """Float TFLite, or full int8 (weights, activations, input, output) when calibrated."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[None, :]] for row in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def export(directory, name, model, representative):
    """Writes `<name>-float.tflite` and the shipped int8 `<name>.tflite`; returns both."""
    float_blob = convert(model)
    int8_blob = convert(model, representative)
    write(directory, f"{name}-float.tflite", float_blob)
    write(directory, f"{name}.tflite", int8_blob)
    return float_blob, int8_blob


def interpreter(blob):
    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    return it


def quantize(x, detail):
    scale, zero = detail["quantization"]
    return np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)


def dequantize(q, detail):
    scale, zero = detail["quantization"]
    return (q.astype(np.float32) - zero) * scale


def run_int8(it, x_int8):
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], x_int8[None, :])
    it.invoke()
    return it.get_tensor(out["index"])[0].copy()


def predict_int8(blob, x):
    """Dequantized outputs of the int8 model for each row of float inputs."""
    it = interpreter(blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    return np.stack([dequantize(run_int8(it, quantize(row, inp)), out) for row in x])


def predict_float(blob, x):
    it = interpreter(blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for row in x:
        it.set_tensor(inp["index"], row[None, :].astype(np.float32))
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


def write(directory, name, blob):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(blob)


def write_metrics(directory, metrics, float_blob, int8_blob):
    """metrics.json: the scores, with the files' sizes and the TensorFlow that made them."""
    metrics = {
        **metrics,
        "bytes_float": len(float_blob),
        "bytes_int8": len(int8_blob),
        "tensorflow": tf.__version__,
    }
    write_json(directory, "metrics.json", metrics)
    print(metrics)


def write_json(directory, name, value):
    with open(os.path.join(directory, name), "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


def reference(blob, model_file, rows, labels, features, outputs):
    """Reference vectors: each row's int8 input and the int8 output LiteRT gives for it."""
    it = interpreter(blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    cases = []
    for row, label in zip(rows, labels):
        q = quantize(row, inp)
        cases.append(
            {
                "class": label,
                "input_f32": [round(float(v), 6) for v in row],
                "input_i8": q.tolist(),
                "output_i8": run_int8(it, q).tolist(),
            }
        )
    return {
        "model": model_file,
        "input": {"shape": [1, len(features)], "scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])},
        "output": {"shape": [1, len(outputs)], "scale": float(out["quantization"][0]), "zero_point": int(out["quantization"][1])},
        "features": features,
        "classes": outputs,
        "cases": cases,
    }

"""Writes wrong-shape.tflite: a valid int8 model whose signature (4 inputs, 2 outputs)
differs from flow-anomaly's, for the tests that must refuse it. Run through ../train.sh."""

import os

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))

tf.keras.utils.set_random_seed(3)
model = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(2, activation="softmax")])
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
rows = np.random.default_rng(3).random((64, 4), dtype=np.float32)
converter.representative_dataset = lambda: ([row[None, :]] for row in rows)
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
with open(os.path.join(HERE, "wrong-shape.tflite"), "wb") as f:
    f.write(converter.convert())

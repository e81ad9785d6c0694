"""Times the Python LiteRT interpreter on one model and input, the baseline for
`fogd bench infer`. Prints the same JSON summary (p50_us, p99_us, mean_us, per_second,
iterations). Run by bench-infer.sh.

    python bench_interpreter.py MODEL.tflite [--reference reference.json] [--iterations N]
"""

import argparse
import json
import math
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def percentile(sorted_ns, pct):
    rank = math.ceil(pct / 100 * len(sorted_ns))
    return sorted_ns[min(max(rank, 1), len(sorted_ns)) - 1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--reference")
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()

    it = Interpreter(model_path=args.model)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if args.reference:
        with open(args.reference) as f:
            values = json.load(f)["cases"][0]["input_i8"]
        x = np.array(values, dtype=inp["dtype"]).reshape(inp["shape"])
    else:
        scale, zero = inp["quantization"]
        value = 0.5 if scale == 0 else round(0.5 / scale) + zero
        x = np.full(inp["shape"], value, dtype=inp["dtype"])

    def call():
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"])

    for _ in range(args.warmup):
        call()
    latencies = []
    start = time.perf_counter_ns()
    for _ in range(args.iterations):
        began = time.perf_counter_ns()
        call()
        latencies.append(time.perf_counter_ns() - began)
    elapsed = (time.perf_counter_ns() - start) / 1e9
    latencies.sort()
    print(json.dumps({
        "iterations": args.iterations,
        "p50_us": percentile(latencies, 50) / 1000,
        "p99_us": percentile(latencies, 99) / 1000,
        "mean_us": sum(latencies) / len(latencies) / 1000,
        "per_second": args.iterations / elapsed,
    }))


if __name__ == "__main__":
    main()

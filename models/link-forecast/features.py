"""Synthetic link-utilization series for the link-forecast model.

One sample is the last WINDOW utilization readings of one link (the share of its capacity
used between two polls, from IF-MIB octet counters and ifHighSpeed) and the reading that
followed. Series mix a daily profile, ramps (congestion building or draining), steps
(a failover moving traffic onto the link), bursts and noise; the ranges and why are in
MODEL_CARD.md.

The traffic-optimizer function feeds the model the same window, unscaled but for the clip
below (wasi-functions/traffic-optimizer/src/forecast.rs); the two must stay in step.
"""

import numpy as np

WINDOW = 8
FEATURES = [f"utilization_t-{WINDOW - 1 - i}" for i in range(WINDOW)]
OUTPUTS = ["utilization_next"]
CEILING = 1.2


def clip(x):
    return np.clip(x, 0.0, CEILING).astype(np.float32)


def series(rng, n):
    """n windows of WINDOW + 1 readings each."""
    t = np.arange(WINDOW + 1)[None, :]
    base = rng.uniform(0.02, 0.7, (n, 1))
    kind = rng.random((n, 1))
    # Daily profile seen over a few polls: a gentle curve.
    amplitude = rng.uniform(0.0, 0.3, (n, 1))
    period = rng.uniform(40, 300, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    curve = amplitude * np.sin(2 * np.pi * t / period + phase)
    # Ramps: congestion building (or draining) at a steady rate per poll.
    slope = rng.uniform(-0.06, 0.08, (n, 1)) * (kind < 0.45)
    ramp = slope * t
    # Steps: traffic moved onto (or off) the link some polls ago.
    step_at = rng.integers(1, WINDOW, (n, 1))
    step = rng.uniform(-0.3, 0.4, (n, 1)) * ((kind >= 0.45) & (kind < 0.6)) * (t >= step_at)
    noise = rng.normal(0.0, 1.0, (n, WINDOW + 1)) * rng.uniform(0.002, 0.03, (n, 1))
    # Bursts: single readings well above the trend, which should not be followed.
    burst = (rng.random((n, WINDOW + 1)) < 0.03) * rng.uniform(0.05, 0.3, (n, WINDOW + 1))
    burst[:, -1] = 0.0
    return clip(base + curve + ramp + step + noise + burst)


def generate(n, seed):
    """(inputs: last WINDOW readings, targets: the next reading)."""
    rng = np.random.default_rng(seed)
    readings = series(rng, n)
    return readings[:, :WINDOW], readings[:, WINDOW:]


def last_value_baseline(windows):
    return windows[:, -1:]

"""Synthetic health windows for the equipment-health model.

One sample is the last WINDOW polls of one device's seven health signals. A device is
either healthy (some of them busy: hot, loaded, but stable) or on its way to failing
because of one signal, which is then out of its healthy range or moving towards it. The
ranges are in MODEL_CARD.md, with where they come from.

The same scaling is applied by the predictive-maintenance function before inference
(wasi-functions/predictive-maintenance/src/features.rs); the two must stay in step.
"""

import numpy as np

WINDOW = 6
SIGNALS = [
    "temperature_c",
    "fan_rpm",
    "if_errors_per_s",
    "if_discards_per_s",
    "rx_power_dbm",
    "cpu_pct",
    "memory_pct",
]
FEATURES = [f"{signal}_{part}" for signal in SIGNALS for part in ("level", "trend")]
CLASSES = ["healthy"] + [f"failing_{signal}" for signal in SIGNALS]


def scale(windows):
    """Raw windows (n, WINDOW, 7) -> model input (n, 14): each signal's latest level and its
    trend (mean change per poll), both scaled to roughly [-1, 1]."""
    latest = windows[:, -1, :]
    trend = (windows[:, -1, :] - windows[:, 0, :]) / (WINDOW - 1)
    log_latest = np.log1p(np.maximum(windows[:, -1, 2:4], 0))
    log_trend = (log_latest - np.log1p(np.maximum(windows[:, 0, 2:4], 0))) / (WINDOW - 1)
    columns = [
        (latest[:, 0] / 100.0, trend[:, 0] / 5.0),
        (latest[:, 1] / 10000.0, trend[:, 1] / 1000.0),
        (log_latest[:, 0] / 8.0, log_trend[:, 0] / 2.0),
        (log_latest[:, 1] / 8.0, log_trend[:, 1] / 2.0),
        ((latest[:, 4] + 40.0) / 40.0, trend[:, 4] / 2.0),
        (latest[:, 5] / 100.0, trend[:, 5] / 20.0),
        (latest[:, 6] / 100.0, trend[:, 6] / 10.0),
    ]
    return np.clip(np.stack([part for pair in columns for part in pair], axis=1), -1.0, 1.5).astype(np.float32)


# Healthy ranges (level low, level high) and how much a healthy signal drifts per poll.
HEALTHY = {
    "temperature_c": (30.0, 55.0, 0.4),
    "fan_rpm": (3000.0, 7000.0, 60.0),
    "if_errors_per_s": (0.0, 0.5, 0.05),
    "if_discards_per_s": (0.0, 3.0, 0.3),
    "rx_power_dbm": (-9.0, -2.0, 0.05),
    "cpu_pct": (5.0, 60.0, 2.0),
    "memory_pct": (20.0, 70.0, 0.3),
}
# Busy but healthy: what load does to a device that is fine.
BUSY = {
    "temperature_c": (50.0, 63.0, 0.6),
    "cpu_pct": (60.0, 88.0, 4.0),
    "memory_pct": (60.0, 82.0, 0.4),
    "if_discards_per_s": (2.0, 20.0, 2.0),
}
# Failing: the level it ends at, and the change per poll on the way there.
FAILING = {
    "temperature_c": (62.0, 95.0, (0.8, 4.0)),
    "fan_rpm": (300.0, 2200.0, (-600.0, -80.0)),
    "if_errors_per_s": (8.0, 800.0, None),
    "if_discards_per_s": (60.0, 5000.0, None),
    "rx_power_dbm": (-28.0, -13.0, (-1.5, -0.2)),
    "cpu_pct": (93.0, 100.0, (0.0, 3.0)),
    "memory_pct": (88.0, 99.5, (0.5, 3.0)),
}


def steady(rng, low, high, drift, n):
    level = rng.uniform(low, high, n)
    steps = rng.normal(0.0, drift, (n, WINDOW))
    return level[:, None] + np.cumsum(steps, axis=1) - steps.sum(axis=1, keepdims=True) / 2


def failing(rng, signal, n):
    low, high, slope = FAILING[signal]
    end = rng.uniform(low, high, n)
    if slope is None:
        # Error and discard rates grow by a factor per poll up to where they end.
        growth = rng.uniform(1.3, 3.0, n)
        powers = growth[:, None] ** (np.arange(WINDOW) - (WINDOW - 1))
        return end[:, None] * powers
    per_poll = rng.uniform(slope[0], slope[1], n)
    return end[:, None] + per_poll[:, None] * (np.arange(WINDOW) - (WINDOW - 1))


def generate(n_per_class, seed):
    """(scaled features, class labels), n_per_class of each class."""
    rng = np.random.default_rng(seed)
    windows, labels = [], []
    for label, name in enumerate(CLASSES):
        block = np.zeros((n_per_class, WINDOW, len(SIGNALS)))
        busy = rng.random(n_per_class) < 0.3
        for index, signal in enumerate(SIGNALS):
            low, high, drift = HEALTHY[signal]
            block[:, :, index] = steady(rng, low, high, drift, n_per_class)
            if signal in BUSY:
                b_low, b_high, b_drift = BUSY[signal]
                block[busy, :, index] = steady(rng, b_low, b_high, b_drift, int(busy.sum()))
        if name != "healthy":
            index = label - 1
            block[:, :, index] = failing(rng, SIGNALS[index], n_per_class)
        block[:, :, 2:4] = np.maximum(block[:, :, 2:4], 0.0)
        block[:, :, 5:7] = np.clip(block[:, :, 5:7], 0.0, 100.0)
        block[:, :, 1] = np.maximum(block[:, :, 1], 0.0)
        windows.append(block)
        labels.append(np.full(n_per_class, label))
    windows = np.concatenate(windows)
    labels = np.concatenate(labels)
    order = rng.permutation(len(labels))
    return scale(windows[order]), labels[order], windows[order]


# The non-ML baseline: one fixed threshold per signal on its latest value, checked in this
# order; the first crossed names the failing signal.
THRESHOLDS = [
    ("temperature_c", ">", 65.0),
    ("fan_rpm", "<", 2500.0),
    ("if_errors_per_s", ">", 5.0),
    ("if_discards_per_s", ">", 50.0),
    ("rx_power_dbm", "<", -12.0),
    ("cpu_pct", ">", 92.0),
    ("memory_pct", ">", 88.0),
]


def threshold_baseline(windows):
    latest = windows[:, -1, :]
    predicted = np.zeros(len(latest), dtype=int)
    for signal, op, limit in reversed(THRESHOLDS):
        index = SIGNALS.index(signal)
        crossed = latest[:, index] > limit if op == ">" else latest[:, index] < limit
        predicted[crossed] = index + 1
    return predicted

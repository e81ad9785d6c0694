"""Synthetic per-destination flow windows for the flow-anomaly model.

One sample is one second of traffic towards one destination address, summarised
as the eight features below. The generator draws each class from ranges taken
from what the traffic tools on a Debian box produce (hping3 --flood -S, hping3
--udp --flood, nmap -sS, iperf3 and HTTP fetches as normal traffic) and from the
published shape of such attacks; see MODEL_CARD.md for the ranges and why.

The same scaling is applied by the ddos-detector function before inference
(wasi-functions/ddos-detector/src/features.rs); the two must stay in step.
"""

import numpy as np

FEATURES = [
    "packets_per_s",
    "bytes_per_s",
    "syn_share",
    "udp_share",
    "distinct_sources",
    "distinct_dst_ports",
    "mean_packet_size",
    "new_flows_per_s",
]
CLASSES = ["normal", "syn_flood", "udp_flood", "scan"]


def scale(raw):
    """Raw window counters -> model input in roughly [0, 1]."""
    pps, bps, syn, udp, sources, ports, size, flows = raw.T
    return np.stack(
        [
            np.log1p(pps) / 12.0,
            np.log1p(bps) / 20.0,
            syn,
            udp,
            np.log1p(sources) / 12.0,
            np.log1p(ports) / 12.0,
            size / 1500.0,
            np.log1p(flows) / 12.0,
        ],
        axis=1,
    ).astype(np.float32)


def _log_uniform(rng, low, high, n):
    return np.exp(rng.uniform(np.log(low), np.log(high), n))


def _normal(rng, n):
    # Half ordinary service traffic, half busy periods (flash crowds, backups)
    # so that volume alone never separates attack from normal.
    busy = rng.random(n) < 0.5
    pps = np.where(busy, _log_uniform(rng, 2_000, 60_000, n), _log_uniform(rng, 5, 3_000, n))
    size = rng.uniform(180, 1_400, n)
    syn = rng.uniform(0.0, 0.12, n)
    udp = rng.uniform(0.0, 0.45, n)
    sources = np.minimum(pps, np.where(busy, _log_uniform(rng, 50, 20_000, n), _log_uniform(rng, 1, 300, n)))
    ports = _log_uniform(rng, 1, 12, n)
    flows = pps * rng.uniform(0.002, 0.06, n)
    return pps, size, syn, udp, sources, ports, flows


def _syn_flood(rng, n):
    pps = _log_uniform(rng, 3_000, 400_000, n)
    size = rng.uniform(54, 80, n)
    syn = rng.uniform(0.8, 1.0, n)
    udp = rng.uniform(0.0, 0.05, n)
    spoofed = rng.random(n) < 0.7
    sources = np.minimum(pps, np.where(spoofed, _log_uniform(rng, 1_000, 400_000, n), _log_uniform(rng, 1, 20, n)))
    ports = _log_uniform(rng, 1, 4, n)
    flows = pps * syn * rng.uniform(0.8, 1.0, n)
    return pps, size, syn, udp, sources, ports, flows


def _udp_flood(rng, n):
    pps = _log_uniform(rng, 3_000, 400_000, n)
    size = rng.uniform(60, 1_450, n)
    syn = rng.uniform(0.0, 0.03, n)
    udp = rng.uniform(0.85, 1.0, n)
    sources = np.minimum(pps, _log_uniform(rng, 1, 100_000, n))
    ports = _log_uniform(rng, 1, 60_000, n)
    flows = pps * rng.uniform(0.3, 1.0, n)
    return pps, size, syn, udp, sources, ports, flows


def _scan(rng, n):
    pps = _log_uniform(rng, 50, 8_000, n)
    size = rng.uniform(54, 90, n)
    udp_scan = rng.random(n) < 0.2
    syn = np.where(udp_scan, rng.uniform(0.0, 0.05, n), rng.uniform(0.45, 1.0, n))
    udp = np.where(udp_scan, rng.uniform(0.8, 1.0, n), rng.uniform(0.0, 0.1, n))
    sources = _log_uniform(rng, 1, 4, n)
    ports = np.minimum(pps, _log_uniform(rng, 80, 65_535, n))
    flows = pps * rng.uniform(0.5, 1.0, n)
    return pps, size, syn, udp, sources, ports, flows


GENERATORS = [_normal, _syn_flood, _udp_flood, _scan]


def generate(n_per_class, seed):
    """Returns (scaled features, labels) with n_per_class samples of each class."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, gen in enumerate(GENERATORS):
        pps, size, syn, udp, sources, ports, flows = gen(rng, n_per_class)
        raw = np.stack([pps, pps * size, syn, udp, sources, ports, size, flows], axis=1)
        xs.append(scale(raw))
        ys.append(np.full(n_per_class, label))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    order = rng.permutation(len(y))
    return x[order], y[order]

"""Peer of benches/metrics.rs: sklearn.metrics.roc_auc_score on the same 10^6 LCG-drawn items.

    OMP_NUM_THREADS=2 benches/peers/.venv/bin/python benches/peers/metrics_sklearn.py
"""

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

MASK = (1 << 64) - 1


def items(n, seed):
    x = seed
    labels = np.empty(n, dtype=bool)
    scores = np.empty(n)
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
        label = (x >> 11) / float(1 << 53) < 0.3
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
        labels[i] = label
        scores[i] = (x >> 11) / float(1 << 53) + (0.5 if label else 0.0)
    return labels, scores


labels, scores = items(1_000_000, 42)
auc = roc_auc_score(labels, scores)
times = []
for _ in range(7):
    start = time.perf_counter()
    a = roc_auc_score(labels, scores)
    times.append((time.perf_counter() - start) * 1e3)
    assert a == auc
times.sort()
print(f"sklearn roc_auc_score n=1000000: AUC {auc:.15f} median {times[3]:.1f} ms over 7 runs (min {times[0]:.1f})")

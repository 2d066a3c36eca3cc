"""scikit-learn peer of benches/cluster.rs: the same inputs (regenerated from the same counter-based
SplitMix64 stream, see tests/fixtures/analysis/make_cluster_fixtures.py), timed with 2 BLAS/OpenMP
threads unless OMP_NUM_THREADS is set.

    OMP_NUM_THREADS=2 benches/peers/.venv/bin/python benches/peers/cluster_sklearn.py [--quick]

--quick runs k-means with n_init 1 instead of 10 (sklearn takes minutes at k = 4,000, n_init 10);
--kmeans-only skips PCA and NMI.
"""
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "analysis"))
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from make_cluster_fixtures import blobs, correlated, labels  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score  # noqa: E402
from sklearn.preprocessing import normalize  # noqa: E402


def timed(f, reps=1):
    best, out = float("inf"), None
    for _ in range(reps):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def pca_and_nmi():
    x = correlated(1000, 9700, 768, 60)
    for solver in ["full", "randomized", "covariance_eigh"]:
        t, p = timed(lambda: PCA(20, svd_solver=solver, random_state=0).fit(x).transform(x), reps=3)
        print(f"PCA 9700x768 -> 20, svd_solver={solver}: {t:.3f} s "
              f"(sum of first transformed column^2 {np.sum(p[:, 0]**2):.6f})")
    a, b = labels(2000, 1_000_000, 4000), labels(2100, 1_000_000, 4000)
    t, v = timed(lambda: normalized_mutual_info_score(a, b, average_method="arithmetic"), reps=3)
    print(f"NMI 1e6 items, 4000 x 4000 labels: {t:.3f} s (value {v:.15f})")


def kmeans(n_init):
    xk = normalize(blobs(3000, 9700, 20, 1000, 3.0))
    t, km = timed(lambda: KMeans(4000, n_init=n_init, random_state=0, algorithm="lloyd").fit(xk))
    print(f"KMeans k=4000 n_init={n_init} on 9700x20 (k-means++, lloyd): {t:.3f} s "
          f"(inertia {km.inertia_:.6f}, n_iter {km.n_iter_})")


def main():
    print(f"sklearn {sklearn.__version__}, numpy {np.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    if "--kmeans-only" not in sys.argv:
        pca_and_nmi()
    kmeans(1 if "--quick" in sys.argv else 10)


if __name__ == "__main__":
    main()

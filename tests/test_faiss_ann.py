"""Tests for baselines.faiss_ann (course chapter 1: FAISS ANN retrieval). Tiny synthetic data."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from baselines.faiss_ann import (
    IndexSpec,
    benchmark_indexes,
    build_index,
    clustered_vectors,
    default_specs,
    format_benchmark,
    recall_against_exact,
    search,
)

K = 10


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One OpenMP thread: deterministic and fast on a shared, oversubscribed CI box."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def clustered():
    """(database [3000, 32], queries [200, 32]) from one gaussian mixture."""
    x = clustered_vectors(3200, 32, 16, 0)
    return x[:3000], x[3000:]


@pytest.fixture(scope="module")
def exact_ids(clustered):
    db, q = clustered
    return search(build_index(db, IndexSpec("Flat")), q, K)[1]


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_flat_matches_numpy_brute_force(metric):
    rng = np.random.default_rng(1)
    db = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((40, 16)).astype(np.float32)
    scores, ids = search(build_index(db, IndexSpec("Flat", metric=metric)), q, K)
    d64, q64 = db.astype(np.float64), q.astype(np.float64)
    if metric == "ip":
        ref = q64 @ d64.T
        ref_ids = np.argsort(-ref, axis=1, kind="stable")[:, :K]
    else:
        ref = ((q64[:, None, :] - d64[None, :, :]) ** 2).sum(-1)
        ref_ids = np.argsort(ref, axis=1, kind="stable")[:, :K]
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (40, K)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(ref, ref_ids, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_ivf_with_full_nprobe_equals_flat(clustered, metric):
    db, q = clustered
    flat_scores, flat_ids = search(build_index(db, IndexSpec("Flat", metric=metric)), q, K)
    ivf = build_index(db, IndexSpec("IVF16,Flat", metric=metric, nprobe=16))
    scores, ids = search(ivf, q, K)
    np.testing.assert_array_equal(ids, flat_ids)
    np.testing.assert_allclose(scores, flat_scores, rtol=1e-5, atol=1e-5)
    # and a single probe really is approximate (guards against nprobe being ignored)
    _, ids1 = search(build_index(db, IndexSpec("IVF16,Flat", metric=metric, nprobe=1)), q, K)
    assert recall_against_exact(ids1, flat_ids, K) < 0.99


def test_hnsw_recall(clustered, exact_ids):
    db, q = clustered
    _, ids = search(build_index(db, IndexSpec("HNSW32", ef_search=64)), q, K)
    assert recall_against_exact(ids, exact_ids, K) >= 0.95  # measured ~0.998-1.0 over 8 seeds


def test_ivfpq_recall(clustered, exact_ids):
    db, q = clustered
    index = build_index(db, IndexSpec("IVF32,PQ8np", nprobe=8))
    _, ids = search(index, q, K)
    # 8-byte codes on 32-d data: measured ~0.67-0.69 over 8 seeds; random would be ~0.003
    assert recall_against_exact(ids, exact_ids, K) >= 0.5
    assert faiss.serialize_index(index).nbytes < db.nbytes / 2  # codes really are compressed


def test_batched_search_equals_single_batch(clustered):
    db, q = clustered
    index = build_index(db, IndexSpec("IVF32,Flat", nprobe=4))
    s_all, i_all = search(index, q, K, batch_size=len(q))
    s_bat, i_bat = search(index, q, K, batch_size=7)
    np.testing.assert_array_equal(i_bat, i_all)
    np.testing.assert_array_equal(s_bat, s_all)


def test_same_seed_same_ivf_and_seed_is_used(clustered):
    db, q = clustered

    def centroids_and_ids(spec):
        index = build_index(db, spec)
        quantizer = faiss.extract_index_ivf(index).quantizer
        return quantizer.reconstruct_n(0, quantizer.ntotal), search(index, q, K)

    spec = IndexSpec("IVF32,Flat", nprobe=4, seed=3, train_size=2000)
    c1, (s1, i1) = centroids_and_ids(spec)
    c2, (s2, i2) = centroids_and_ids(spec)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    # without train_size the seed only reaches faiss' k-means: it must change the centroids
    c3, _ = centroids_and_ids(IndexSpec("IVF32,Flat", nprobe=4, seed=3))
    c4, _ = centroids_and_ids(IndexSpec("IVF32,Flat", nprobe=4, seed=4))
    assert not np.array_equal(c3, c4)


def test_nan_and_dim_mismatch_raise(clustered):
    db, q = clustered
    bad = db.copy()
    bad[[5, 9], 3] = np.nan
    bad[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"3 row\(s\) with NaN or inf"):
        build_index(bad, IndexSpec("Flat"))
    index = build_index(db, IndexSpec("Flat"))
    bad_q = q.copy()
    bad_q[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search(index, bad_q, K)
    with pytest.raises(ValueError, match="dim"):
        search(index, q[:, :16], K)
    with pytest.raises(ValueError, match="2-D"):
        build_index(db[0], IndexSpec("Flat"))


def test_bad_specs_raise(clustered):
    db, _ = clustered
    with pytest.raises(ValueError, match="nlist"):
        build_index(db[:100], IndexSpec("IVF256,Flat"))
    with pytest.raises(ValueError, match="nprobe"):
        build_index(db, IndexSpec("HNSW32", nprobe=4))
    with pytest.raises(ValueError, match="metric"):
        IndexSpec("Flat", metric="cosine")


def test_recall_against_exact_hand_example():
    approx = np.array([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[3, 2, 9], [7, 8, 4]])
    assert recall_against_exact(approx, exact, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_against_exact(approx, exact, 2) == pytest.approx((1 / 2 + 0) / 2)
    assert recall_against_exact(approx, exact, 1) == 0.0
    assert recall_against_exact(exact, exact, 3) == 1.0
    assert recall_against_exact(np.array([[-1, -1]]), np.array([[-1, -1]]), 2) == 0.0
    with pytest.raises(ValueError):
        recall_against_exact(approx, exact, 4)


def test_default_specs_and_benchmark(clustered):
    db, q = clustered
    specs = default_specs(len(db), db.shape[1])
    assert [s.factory.split(",")[0][:3] for s in specs] == ["Fla", "IVF", "HNS", "IVF"]
    big = default_specs(100_000, 384)
    assert big[1].factory == "IVF1024,Flat" and big[3].factory == "IVF1024,PQ48np"
    rows = benchmark_indexes(db, q[:50], specs, K, repeats=1)
    assert len(rows) == 4
    assert rows[0]["recall_at_k"] == 1.0 and rows[0]["speedup_vs_flat"] == pytest.approx(1.0)
    assert all(0.3 <= r["recall_at_k"] <= 1.0 and r["qps"] > 0 and r["memory_bytes"] > 0 for r in rows)
    table = format_benchmark(rows)
    assert table.count("\n") == 5 and "recall@10 vs Flat" in table

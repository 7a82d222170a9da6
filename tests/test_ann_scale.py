"""Chapter 3: sweeps, Pareto frontiers, the synthetic mixture, the index cache, GPU placement, the table, the
dashboard and a tiny end-to-end run (real corpus replaced by a synthetic stand-in)."""

from __future__ import annotations

import json
import re

import faiss
import numpy as np
import pytest

from baselines.faiss_ann import scale
from baselines.faiss_ann.benchmark import clustered_vectors
from baselines.faiss_ann.corpus import RealCorpus, fit_mixture, load_mixture
from baselines.faiss_ann.dashboard import write_dashboard
from baselines.faiss_ann.gpu import num_gpus, place
from baselines.faiss_ann.scale_table import corpus_grid, goal_verdict, plot_pareto, table_rows
from baselines.faiss_ann.sweep import (IndexFamily, cached_index, cheapest, exact_neighbours, nlist_for, parse_grid,
                                       sweep_family)


def test_parse_grid_is_the_cartesian_product_and_rejects_malformed_grids():
    assert parse_grid("") == [""]
    assert parse_grid("nprobe=1,4;k_factor_rf=2,8") == ["nprobe=1,k_factor_rf=2", "nprobe=1,k_factor_rf=8",
                                                        "nprobe=4,k_factor_rf=2", "nprobe=4,k_factor_rf=8"]
    for bad in ("nprobe", "nprobe=", "=4", "nprobe=a,b"):
        with pytest.raises(ValueError):
            parse_grid(bad)
    with pytest.raises(ValueError, match="ef_construction"):
        IndexFamily("x", "HNSW8", ef_construction=0)


def test_nlist_is_a_power_of_two_near_four_sqrt_n():
    assert nlist_for(62_607) == 1024 and nlist_for(1_000_000) == 4096 and nlist_for(3000) == 64 and nlist_for(10) == 1


def test_mixture_samples_are_deterministic_unit_vectors_and_chunking_is_invisible():
    real = clustered_vectors(2000, 16, 10, seed=1)
    model = fit_mixture(real, num_components=10, rank=3, seed=0)
    a, b = model.sample(300, seed=7), model.sample(300, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(a, model.sample(300, seed=8))
    np.testing.assert_array_equal(np.concatenate(list(model.sample_chunks(300, 7))), a)
    assert abs(model.weights.sum() - 1) < 1e-9
    again = load_mixture(model.to_npz())
    assert again.fingerprint() == model.fingerprint()


def test_mixture_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least"):
        fit_mixture(np.ones((10, 4), np.float32), num_components=8)
    bad = clustered_vectors(200, 8, 4)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError):
        fit_mixture(bad, num_components=4, rank=2)
    with pytest.raises(ValueError, match="rank"):
        fit_mixture(clustered_vectors(200, 8, 4), num_components=4, rank=8)


def test_cached_index_is_reused_and_searches_identically(tmp_path):
    x = clustered_vectors(3000, 16, 8, seed=0)
    q = clustered_vectors(50, 16, 8, seed=1)
    family = IndexFamily("IVF", "IVF{nlist},Flat", "nprobe=2")
    first, info = cached_index(x, "fp", family, cache=tmp_path)
    second, again = cached_index(x, "fp", family, cache=tmp_path)
    assert not info["reused"] and again["reused"] and again["factory"] == "IVF64,Flat"
    faiss.ParameterSpace().set_index_parameters(first, "nprobe=2")
    faiss.ParameterSpace().set_index_parameters(second, "nprobe=2")
    np.testing.assert_array_equal(first.search(q, 5)[1], second.search(q, 5)[1])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    other, fresh = cached_index(x, "other-fingerprint", family, cache=tmp_path)   # content key, not name
    assert not fresh["reused"]


def test_sweep_points_and_faiss_pareto_frontier_match_a_naive_frontier():
    x = clustered_vectors(4000, 16, 8, seed=0)
    q = clustered_vectors(200, 16, 8, seed=1)
    truth = exact_neighbours(x, q, 10)
    family = IndexFamily("IVF", "IVF64,Flat", "nprobe=1,2,4,8,64")
    index, _ = cached_index(x, "fp", family)
    points, optimal = sweep_family(index, q, truth, family, repeats=1)
    assert [p["setting"] for p in points] == [f"nprobe={n}" for n in (1, 2, 4, 8, 64)]
    assert points[-1]["recall"] == 1.0                                   # nprobe = nlist is exact
    naive = {p["setting"] for p in points
             if not any((o["recall"] >= p["recall"] and o["search_s"] < p["search_s"]) or
                        (o["recall"] > p["recall"] and o["search_s"] <= p["search_s"]) for o in points)}
    assert set(optimal) == naive


def test_cheapest_is_the_fastest_point_reaching_the_target():
    points = [{"recall": 0.9, "qps": 100}, {"recall": 0.96, "qps": 50}, {"recall": 0.99, "qps": 80}]
    assert cheapest(points, 0.95)["qps"] == 80 and cheapest(points, 0.5)["qps"] == 100
    assert cheapest(points, 0.999) is None


def test_extrapolation_recovers_exact_laws():
    sizes = [1e5, 2e5, 4e5, 1e6]
    assert scale.extrapolate(sizes, [3 + 2e-5 * n for n in sizes], 10**7, kind="linear")["predicted"] == \
        pytest.approx(203.0)
    assert scale.extrapolate(sizes, [5e8 / n for n in sizes], 10**7, kind="power")["predicted"] == pytest.approx(50.0)
    assert scale.extrapolate(sizes, [1.0 - 0.01 * np.log(n) for n in sizes], 10**7, kind="log")["predicted"] == \
        pytest.approx(1.0 - 0.01 * np.log(1e7))
    with pytest.raises(ValueError):
        scale.extrapolate(sizes, sizes, 10, kind="cubic")


def test_gpu_placement_falls_back_to_the_cpu_and_rejects_unknown_devices():
    index = faiss.IndexFlatIP(8)
    assert place(index, "cpu").device == "cpu"
    if num_gpus() == 0:
        placement = place(index, "gpu")
        assert placement.device == "cpu" and "no GPU" in placement.note and placement.index is index
    with pytest.raises(ValueError, match="device"):
        place(index, "tpu")
    with pytest.raises(ValueError, match="mode"):
        place(index, "gpu", mode="mirrors")
    with pytest.raises(ValueError, match="device"):
        scale.AnnScaleConfig(device="cuda")


@pytest.mark.skipif(num_gpus() == 0, reason="faiss sees no GPU")
@pytest.mark.parametrize("mode", ["replicas", "shards"])
def test_gpu_ivf_search_matches_the_cpu(mode):
    x = clustered_vectors(5000, 32, 8, seed=0)
    q = clustered_vectors(64, 32, 8, seed=1)
    cpu, _ = cached_index(x, "fp", IndexFamily("IVF", "IVF64,Flat"))
    faiss.ParameterSpace().set_index_parameters(cpu, "nprobe=64")
    placement = place(cpu, "gpu", mode=mode)
    assert placement.device.startswith("gpu")
    faiss.GpuParameterSpace().set_index_parameters(placement.index, "nprobe=64")
    np.testing.assert_array_equal(placement.index.search(q, 10)[1], cpu.search(q, 10)[1])


def tiny_config(**changes):
    families = (IndexFamily("IVF-Flat", "IVF{nlist},Flat", "nprobe=1,4,16"),
                IndexFamily("HNSW8", "HNSW8", "efSearch=8,32", ef_construction=20),
                IndexFamily("IVF-PQ4", "IVF{nlist},PQ4x4", "nprobe=4,16", compressed=True, corpora=("synthetic",)))
    fit = (IndexFamily("IVF-Flat", "IVF{nlist},Flat", "nprobe=1,4"),)
    values = dict(synthetic_size=3000, synthetic_queries=60, fit_check_queries=60, latency_queries=20,
                  mixture_components=8, mixture_rank=2, families=families, fit_check_families=fit,
                  batch_sizes=(1, 16), extrapolation_sizes=(1000, 2000), extrapolate_to=100_000, threads=1)
    return scale.AnnScaleConfig(**{**values, **changes})


def test_tiny_run_table_and_dashboard(isolated_dirs, monkeypatch, tmp_path):
    vectors = clustered_vectors(2500, 16, 8, seed=3)
    corpus = RealCorpus(vectors=vectors, queries=clustered_vectors(80, 16, 8, seed=4),
                        item_sources={"toy": 2500}, query_sources={"toy queries": 80})
    monkeypatch.setattr(scale, "load_real_corpus", lambda **kwargs: corpus)
    metrics = json.loads(json.dumps(scale.run(tiny_config(), 0, tmp_path)))    # what report.json holds
    real, synthetic = metrics["corpora"]["real"], metrics["corpora"]["synthetic"]
    assert real["num_vectors"] == 2500 and synthetic["num_vectors"] == 3000
    assert [f["family"] for f in real["families"]] == ["IVF-Flat", "HNSW8"]
    assert [f["family"] for f in synthetic["families"]] == ["IVF-Flat", "HNSW8", "IVF-PQ4"]
    ivf = synthetic["families"][0]
    assert {p["setting"] for p in ivf["points"]} == {"nprobe=1", "nprobe=4", "nprobe=16"}
    assert set(ivf["pareto"]) <= {p["setting"] for p in ivf["points"]}
    assert ivf["latency"]["p99_ms"] >= ivf["latency"]["p50_ms"] > 0
    assert sum(ivf["latency"]["histogram_log10_ms"]["counts"]) == 20
    assert [row["size"] for row in metrics["extrapolation"][0]["measured"]] == [1000, 2000, 3000]
    assert metrics["fit_check"]["max_recall_gap"] >= 0
    rows = table_rows(metrics)
    families = [f for c in metrics["corpora"].values() for f in c["families"]]
    assert len(rows) == 3 * sum(len(f["points"]) for f in families) + 4 * len(families)
    grid = corpus_grid(synthetic, ["0.90", "0.95"])
    assert grid.count("\n") == 1 + 1 + 3 and "IVF-PQ4" in grid
    assert "Goal at 3,000 vectors" in goal_verdict(synthetic)
    plot_pareto(metrics, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    first = write_dashboard(metrics, tmp_path / "a.html", title="t", subtitle="s").read_bytes()
    second = write_dashboard(metrics, tmp_path / "b.html", title="t", subtitle="s").read_bytes()
    assert first == second                                                   # fixed ids: same report, same bytes
    html = first.decode()
    assert not re.search(r"<script[^>]*src=[\"']https?:", html) and len(html) > 1_000_000     # plotly.js inlined
    assert all(f'id="panel-{number}"' in html for number in range(4))


def test_goal_verdict_needs_recall_throughput_and_tail_latency():
    def result(recall, qps, p99):
        family = {"family": "F", "operating_point": {"setting": "s", "recall": recall, "qps": qps},
                  "latency": {"p99_ms": p99}}
        return {"num_vectors": 1_000_000, "families": [family]}

    assert "**holds**" in goal_verdict(result(0.96, 2500, 4.0))
    for bad in (result(0.94, 2500, 4.0), result(0.96, 1500, 4.0), result(0.96, 2500, 6.0)):
        assert "**fails**" in goal_verdict(bad)

"""Chapter 6 multiphase retrieval: prefix index, multi-probe encoders, two-phase search, hybrid, run + table."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from baselines.multiphase import (MultiphaseSearcher, ParallelCodeEncoder, PrefixIndex, ResidualCodeEncoder,
                                  encoder_for, hybrid_rerank)
from baselines.multiphase.hybrid import beam_code_paths
from baselines.multiphase.matched import matched_recall, verdict
from baselines.sid_tokenizers.rq_kmeans import RQKMeansTokenizer


def random_codes(num_items=157, sizes=(5, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, num_items) for size in sizes], axis=1), sizes


def naive_under(codes, paths, depth):
    return {item for item in range(len(codes)) for path in paths if (codes[item, :depth] == path[:depth]).all()}


def test_prefix_index_ranges_equal_naive_loop():
    codes, sizes = random_codes()
    index = PrefixIndex(codes, sizes)
    rng = np.random.default_rng(1)
    for _ in range(20):
        paths = np.stack([rng.integers(0, size, 3) for size in sizes], axis=1)
        for depth in range(len(sizes) + 1):
            starts, stops = index.prefix_ranges(paths, depth)
            found = index.items_in(starts, stops)
            assert len(found) == len(set(found.tolist()))                       # each item once
            assert set(found.tolist()) == naive_under(codes, paths, depth)
            assert index.count_under(paths, depth) == len(found)


def naive_backoff(codes, paths, min_candidates):
    """Reference: every full path, then shorter prefixes best path first, until min_candidates are collected."""
    collected, length = set(), codes.shape[1]
    for depth in range(length, -1, -1):
        for path in paths:
            collected |= naive_under(codes, path[None], depth)
            if depth < length and len(collected) >= min_candidates:
                return collected, depth
        if len(collected) >= min_candidates:
            return collected, depth
    return collected, 0


def test_backoff_reaches_min_candidates_and_equals_the_naive_loop():
    codes, sizes = random_codes()
    index = PrefixIndex(codes, sizes)
    rng = np.random.default_rng(2)
    for min_candidates in (0, 1, 5, 20, 60, 100, len(codes)):
        for _ in range(5):
            paths = np.stack([rng.integers(0, size, 3) for size in sizes], axis=1)
            found = index.candidates(paths, min_candidates)
            assert len(found.items) >= min_candidates and len(found.items) == len(set(found.items.tolist()))
            expected, depth = naive_backoff(codes, paths, min_candidates)
            assert (set(found.items.tolist()), found.depth) == (expected, depth)
            assert naive_under(codes, paths, found.depth + 1 if found.depth < 3 else 3) <= set(found.items.tolist())


def test_ordered_backoff_visits_the_nearest_first_level_cells_instead_of_the_catalogue():
    codes, sizes = random_codes()
    index = PrefixIndex(codes, sizes)
    rng = np.random.default_rng(5)
    for min_candidates in (1, 20, 60, 100, len(codes)):
        for _ in range(5):
            paths = np.stack([rng.integers(0, size, 2) for size in sizes], axis=1)
            order = rng.permutation(sizes[0])
            found = index.candidates(paths, min_candidates, order)
            expected, depth = naive_backoff(codes, paths, min_candidates)
            if depth >= 1:                      # the ordered backoff only changes what replaces depth 0
                assert (set(found.items.tolist()), found.depth) == (expected, depth)
                continue
            cells = list(dict.fromkeys(paths[:, 0].tolist())) + [c for c in order.tolist() if c not in paths[:, 0]]
            collected: set[int] = set()
            for cell in cells:
                collected |= set(np.flatnonzero(codes[:, 0] == cell).tolist())
                if len(collected) >= min_candidates:
                    break
            assert (set(found.items.tolist()), found.depth) == (collected, 1)
            assert len(found.items) == len(set(found.items.tolist()))


def fitted_rq_kmeans(num_items=400, dim=12, levels=3, codebook_size=6, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(num_items, dim)).astype(np.float32)
    return vectors, RQKMeansTokenizer(num_levels=levels, codebook_size=codebook_size, num_iterations=10).fit(vectors)


def test_full_probe_and_full_backoff_equal_exact_search():
    vectors, tokenizer = fitted_rq_kmeans()
    searcher = MultiphaseSearcher(vectors, tokenizer.encode(vectors), encoder_for(tokenizer))
    queries = np.random.default_rng(3).normal(size=(23, vectors.shape[1])).astype(np.float32)
    result = searcher.search(queries, 7, probe=tokenizer.codebook_size, min_candidates=len(vectors))
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(result.ids, exact)
    assert (result.num_candidates == len(vectors)).all()
    # probe = K already covers every level-0 code: depth 1 holds the whole catalogue
    assert (searcher.search(queries, 7, probe=tokenizer.codebook_size, min_candidates=len(vectors)).depth <= 1).all()


def test_probe_one_encoding_equals_the_tokenizers_own_encoding(fitted_mmq, one_thread):
    from baselines.sid_tokenizers.rq_vae import RQVAETokenizer

    vectors, rq_kmeans = fitted_rq_kmeans()
    rq_vae = RQVAETokenizer(num_levels=2, codebook_size=8, latent_dim=4, hidden_dims=(16,), batch_size=64,
                            num_steps=30, progress=False).fit(vectors, seed=0)
    mmq, data = fitted_mmq
    for tokenizer, inputs in ((rq_kmeans, vectors), (rq_vae, vectors), (mmq, data)):
        np.testing.assert_array_equal(encoder_for(tokenizer).encode(inputs), tokenizer.encode(inputs))
    assert encoder_for(mmq).structure == "parallel"


def test_parallel_beam_finds_the_exact_best_paths():
    rng = np.random.default_rng(4)
    table = rng.random((6, 3, 5)).astype(np.float32)                  # [queries, positions, K]
    encoder = ParallelCodeEncoder(lambda inputs: table[inputs], (5, 5, 5))
    probed = encoder.probe(np.arange(6), probe=7)
    for query in range(6):
        totals = sorted((sum(table[query, position, code] for position, code in enumerate(path)), path)
                        for path in itertools.product(range(5), repeat=3))
        np.testing.assert_allclose(probed.distances[query], [total for total, _ in totals[:7]], rtol=1e-5)


def test_residual_multi_probe_distances_are_residual_errors_and_beat_greedy():
    vectors, tokenizer = fitted_rq_kmeans()
    probed = encoder_for(tokenizer).probe(vectors[:30], probe=4)
    assert probed.paths.shape == (30, 4, 3)
    assert (np.diff(probed.distances, axis=1) >= -1e-6).all()
    greedy_error = ((vectors[:30] - tokenizer.decode(tokenizer.encode(vectors[:30]))) ** 2).sum(1)
    assert (probed.distances[:, 0] <= greedy_error + 1e-4).all()          # the beam never does worse than greedy
    for column in range(4):                                              # a path's distance is its residual error
        reconstruction = tokenizer.decode(probed.paths[:, column])
        np.testing.assert_allclose(((vectors[:30] - reconstruction) ** 2).sum(1), probed.distances[:, column],
                                   rtol=1e-3, atol=1e-4)


def test_hybrid_rerank_equals_naive():
    codes, sizes = random_codes(num_items=90, sizes=(4, 3, 3))
    index = PrefixIndex(codes, sizes)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(90, 8)).astype(np.float32)
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    beams = np.stack([codes[rng.integers(0, 90, 3), :2] for _ in range(4)])  # [users, beams, 2]: prefixes
    beams[0, 2] = -1                                                           # an unfilled beam
    exclude = np.full((4, 2), -1)
    exclude[1, 0] = int(np.flatnonzero((codes[:, :2] == beams[1, 0]).all(1))[0])  # an item of user 1's first beam
    result = hybrid_rerank(beams, index, vectors, queries, 5, exclude=exclude)
    for user in range(4):
        pool = []
        for path in beams[user]:
            if (path < 0).any():
                continue
            pool += [item for item in range(90) if (codes[item, :2] == path).all() and item not in pool]
        assert result.num_candidates[user] == len(pool)
        pool = [item for item in pool if item not in exclude[user]]
        expected = sorted(pool, key=lambda item: (-float(vectors[item] @ queries[user]), pool.index(item)))[:5]
        assert result.ids[user, :len(expected)].tolist() == expected
        assert (result.ids[user, len(expected):] == -1).all()


def test_beam_glue_runs_a_generative_model_on_synthetic_sids(one_thread):
    import torch

    from mmq.generative.causal import CausalSidRecommender
    from mmq.semantic_ids.dedup import append_dedup_digit

    codes, sizes = random_codes(num_items=40, sizes=(4, 3, 3))
    semantic_ids = append_dedup_digit(codes)
    torch.manual_seed(0)
    model = CausalSidRecommender(codebook_sizes=tuple(int(s) for s in semantic_ids.max(0) + 1), max_length=5, dim=16,
                                 num_layers=1, num_heads=2, decoder_hidden=16)
    histories = np.array([[-1, 3, 4, 5, 6], [1, 2, 3, 4, 5], [-1, -1, -1, 7, 8]])
    paths = beam_code_paths(model, semantic_ids, histories, beam_size=6)
    assert paths.shape == (3, 6, 4)
    index = PrefixIndex(codes, sizes)
    vectors = np.random.default_rng(6).normal(size=(40, 8)).astype(np.float32)
    result = hybrid_rerank(paths[:, :, :3], index, vectors, vectors[[6, 5, 8]], 4, exclude=histories)
    assert (result.ids >= -1).all() and (result.num_candidates >= 1).all()


@pytest.mark.parametrize("case", ["nan_vectors", "shape", "codes_range", "k", "empty", "probe", "float_codes"])
def test_bad_inputs_raise(case):
    vectors, tokenizer = fitted_rq_kmeans(num_items=60)
    codes = tokenizer.encode(vectors)
    encoder = encoder_for(tokenizer)
    queries = vectors[:3]
    with pytest.raises(ValueError):
        if case == "nan_vectors":
            bad = vectors.copy()
            bad[4, 1] = np.nan
            MultiphaseSearcher(bad, codes, encoder)
        elif case == "shape":
            MultiphaseSearcher(vectors, codes[:-1], encoder)
        elif case == "codes_range":
            PrefixIndex(codes, (2, 2, 2))
        elif case == "k":
            MultiphaseSearcher(vectors, codes, encoder).search(queries, 0)
        elif case == "empty":
            PrefixIndex(np.zeros((0, 3), dtype=np.int64), (4, 4, 4))
        elif case == "probe":
            encoder.probe(queries, 0)
        else:
            PrefixIndex(codes.astype(np.float32))
    with pytest.raises(ValueError):
        MultiphaseSearcher(vectors, codes, encoder).search(queries[:, :5], 3)  # query dim mismatch
    with pytest.raises(ValueError):
        ResidualCodeEncoder(np.zeros((3, 4)))                                   # codebooks not [L, K, d]


def test_matched_recall_picks_the_fastest_reaching_ivf_setting():
    ivf = [{"nprobe": 1, "recall@10": 0.5, "p50_ms": 0.1}, {"nprobe": 4, "recall@10": 0.8, "p50_ms": 0.3},
           {"nprobe": 8, "recall@10": 0.95, "p50_ms": 0.6}]
    points = [{"probe": 1, "min_candidates": 1, "recall@10": 0.7, "p50_ms": 0.2},
              {"probe": 2, "min_candidates": 1, "recall@10": 0.99, "p50_ms": 0.2}]
    rows = matched_recall(points, ivf)
    assert rows[0]["ivf_nprobe"] == 4 and rows[0]["ratio"] == pytest.approx(0.667, abs=1e-3)
    assert rows[1]["ivf_nprobe"] is None
    assert "equal or lower latency" in verdict(rows)


def test_tiny_run_through_the_registry_and_table(isolated_dirs):
    from mmq import registry
    from scripts.table_ch6_multiphase import main

    config = isolated_dirs / "tiny_multiphase.yaml"
    config.write_text("kind: multiphase\ntask: synthetic\nfit_methods: [rq_kmeans]\ncode_length: 2\ncodebook_size: 8\n"
                      "synthetic_items: 300\nsynthetic_queries: 20\nsynthetic_dim: 8\nsynthetic_clusters: 5\n"
                      "curve: {probes: [1, 8], min_candidates: [1, 300], ivf_nprobes: [1, 2], "
                      "hnsw_ef_searches: [16], latency_queries: 5}\n")
    report = registry.run_or_load(config, 0, progress=False)
    metrics = report["metrics"]
    points = metrics["multiphase"]["rq_kmeans"]
    assert len(points) == 4 and metrics["flat"][0]["recall@10"] == 1.0
    full = next(point for point in points if point["probe"] == 8 and point["min_candidates"] == 300)
    assert full["recall@10"] == 1.0 and full["mean_candidates"] == 300
    assert {"p50_ms", "p99_ms", "queries_per_second", "task"} <= set(full)
    assert (registry.run_directory(config, 0) / "DONE").exists()
    output = isolated_dirs / "tables"
    assert main(["--configs", str(config), "--output-dir", str(output), "--no-train"]) == 0
    assert "rq_kmeans" in (output / "ch6_multiphase.md").read_text()
    assert (output / "ch6_multiphase.png").stat().st_size > 0 and (output / "ch6_multiphase.csv").exists()


def test_real_beauty_smoke():
    """Real Beauty titles: RQ-KMeans 2 x 64 candidates with backoff find most of exact search's top 10."""
    root = Path(os.environ.get("MMQ_DATA_DIR", "../shared/data"))
    if not (root / "amazon14" / "beauty").is_dir():
        pytest.skip(f"real data not found under MMQ_DATA_DIR={root}")
    from mmq.data import leave_one_out, load_dataset
    from mmq.features import TextFeatureConfig, item_text_embeddings
    from mmq.features.text import text_feature_path

    dataset = load_dataset("beauty", root=root)
    text = TextFeatureConfig(recipe=("title",))
    if not text_feature_path(dataset, text).exists():
        pytest.skip("Beauty title embeddings are not cached (encoding them takes minutes)")
    vectors = item_text_embeddings(dataset, text)
    tokenizer = RQKMeansTokenizer(num_levels=2, codebook_size=64, num_iterations=10).fit(vectors)
    searcher = MultiphaseSearcher(vectors, tokenizer.encode(vectors), encoder_for(tokenizer))
    histories, _ = leave_one_out(dataset).history_and_target("test")
    queries = vectors[[history[-1] for history in histories[:200]]]
    result = searcher.search(queries, 10, probe=4, min_candidates=500)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(result.ids.tolist(), exact.tolist())])
    assert recall > 0.6 and (result.num_candidates >= 500).all()


def test_hybrid_experiment_scores_every_system_like_a_naive_loop():
    from baselines.multiphase.hybrid_experiment import HybridConfig, score_split

    rng = np.random.default_rng(11)
    num_items, users = 40, 6
    vectors = rng.normal(size=(num_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = rng.integers(0, 4, size=(num_items, 2))
    digit = np.zeros((num_items, 1), dtype=np.int64)
    for row in range(num_items):                                   # de-dup digit: order among equal codes
        digit[row] = sum((codes[:row] == codes[row]).all(axis=1))
    semantic_ids = np.hstack([codes, digit])
    items = np.stack([rng.permutation(num_items)[:12] for _ in range(users)])
    items[0, -2:] = -1                                              # an unfilled beam
    padded = np.stack([np.r_[-1, -1, rng.choice(num_items, 2, replace=False)] for _ in range(users)])
    targets = rng.integers(0, num_items, users)
    queries = vectors[padded[:, -1]]
    config = HybridConfig(beams=(10, 12), depths=("full", "code"), fusions=("vector", "rrf"), k=10)
    out = score_split(items, padded, targets, queries, vectors, semantic_ids, PrefixIndex(semantic_ids), config)
    ranks = out["ranks"]
    for user in range(users):
        history = set(padded[user][padded[user] >= 0].tolist())
        generative = [i for i in items[user].tolist() if i >= 0 and i not in history][:10]
        expect = generative.index(targets[user]) + 1 if targets[user] in generative else 0
        assert ranks["generative"][user] == expect
        for beam in (10, 12):
            pool = [i for i in items[user, :beam].tolist() if i >= 0]
            code_pool = {j for i in pool for j in range(num_items) if (codes[j] == codes[i]).all()}
            for depth, candidates in (("full", set(pool)), ("code", code_pool)):
                kept = candidates - history
                scored = sorted(kept, key=lambda i: -float(vectors[i] @ queries[user]))
                expect = scored[:10].index(targets[user]) + 1 if targets[user] in scored[:10] else 0
                assert ranks[f"hybrid beam={beam} depth={depth} rerank=vector"][user] == expect
                beam_order = [j for i in pool for j in sorted(code_pool if depth == "code" else {i})
                              if (codes[j] == codes[i]).all() and (depth == "code" or j == i)]
                beam_order = [j for j in dict.fromkeys(beam_order) if j not in history]
                fused = sorted(kept, key=lambda i: (-(1 / (61 + beam_order.index(i)) + 1 / (61 + scored.index(i))),
                                                    beam_order.index(i)))[:10]
                expect = fused.index(targets[user]) + 1 if targets[user] in fused else 0
                assert ranks[f"hybrid beam={beam} depth={depth} rerank=rrf"][user] == expect
        dense = [i for i in np.argsort(-(vectors @ queries[user])).tolist() if i not in history][:10]
        assert ranks["dense"][user] == (dense.index(targets[user]) + 1 if targets[user] in dense else 0)
    with pytest.raises(ValueError, match="beam"):
        HybridConfig(beams=(5,), k=10)
    with pytest.raises(ValueError, match="depths"):
        HybridConfig(depths=("prefix",))

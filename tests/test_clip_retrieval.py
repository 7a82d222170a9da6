"""Multimodal index: fusion arithmetic, neighbours in each search direction, config validation."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.clip.experiment import ClipRetrievalConfig
from baselines.clip.index import FusionConfig, MultimodalIndex, fuse, normalize_rows
from mmq.config import ConfigError, load_config


def _items():
    """Items 0/1 share text, items 0/2 share image, item 3 matches nothing."""
    text = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    image = np.array([[1, 0], [0, 1], [1, 0], [-1, 0]], np.float32)
    text_joint = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0.1]], np.float32)
    return text, image, text_joint


def test_fused_inner_product_is_weighted_sum_of_cosines():
    rng = np.random.default_rng(0)
    text, image = rng.normal(size=(5, 7)), rng.normal(size=(5, 3))
    fused = fuse(text, image, FusionConfig(image_weight=0.3))
    cos_text = normalize_rows(text) @ normalize_rows(text).T
    cos_image = normalize_rows(image) @ normalize_rows(image).T
    np.testing.assert_allclose(fused @ fused.T, 0.7 * cos_text + 0.3 * cos_image, atol=1e-5)


def test_similar_items_follow_the_fusion_weight():
    text, image, text_joint = _items()
    text_heavy = MultimodalIndex(text=text, image=image, text_joint=text_joint, config=FusionConfig(image_weight=0.1))
    image_heavy = MultimodalIndex(text=text, image=image, text_joint=text_joint, config=FusionConfig(image_weight=0.9))
    assert text_heavy.similar_items(np.array([0]), 1).items[0, 0] == 1    # shared text wins
    assert image_heavy.similar_items(np.array([0]), 1).items[0, 0] == 2   # shared image wins
    result = image_heavy.similar_items(np.arange(4), 3)
    assert all(row not in items for row, items in enumerate(result.items))  # self excluded


def test_cross_modal_search_directions():
    text, image, text_joint = _items()
    index = MultimodalIndex(text=text, image=image, text_joint=text_joint, config=FusionConfig(mode="sum"))
    by_image = index.text_to_items(np.array([[0, 1.0]], np.float32), 1)
    assert by_image.items[0, 0] == 1 and by_image.scores[0, 0] == pytest.approx(1.0)
    by_text = index.image_to_items(np.array([[-1.0, 0]], np.float32), 1)
    assert by_text.items[0, 0] == 3


def test_fusion_and_config_validation(tmp_path):
    with pytest.raises(ValueError, match="image_weight"):
        FusionConfig(image_weight=1.5)
    text, image, _ = _items()
    with pytest.raises(ValueError, match="equal size"):
        fuse(text, image, FusionConfig(mode="sum"))
    path = tmp_path / "bad.yaml"
    path.write_text("image_weigths: [0.5]\n")
    with pytest.raises(ConfigError, match="image_weigths"):
        load_config(ClipRetrievalConfig, path)


def test_table_rows_and_markdown_from_reports():
    from baselines.clip.table import CROSS_MODAL_METRICS, next_item_rows, render_markdown, tower_rows

    scores = {metric: 0.5 for metric in CROSS_MODAL_METRICS[:-1]}
    stage = {"test": {"trained": scores, "random_init": {metric: 0.01 for metric in scores}},
             "text_only_reference": {"text_to_text/category_precision@10": 0.9},
             "split_sizes": {"train": 10, "valid": 2, "test": 4000}, "text_recipe": "title",
             "best_epoch": 3, "history": [{}] * 4, "train_seconds": 120.0}
    tower = [{"metrics": {"stages": {"myntra": stage}}}]
    retrieval = [{"metrics": {"indexes": {"text only (MiniLM)": {"test": {"recall@10": 0.1, "ndcg@10": 0.05,
                                                                           "recall@20": 0.2, "ndcg@20": 0.07}}},
                              "num_queries": 610, "dataset": {"items": 3645}, "selected_fusion": "concat w=0.1"}}]
    rows = tower_rows(tower) + next_item_rows(retrieval)
    assert len(rows) == 2 * 8 + 1 + 4
    assert {row["method"] for row in rows if row["dataset"].startswith("myntra")} == {
        "image tower, trained (ClipLoss vs frozen MiniLM)", "same tower, random init",
        "text only: MiniLM text->text (self excluded)"}
    markdown = render_markdown(tower, retrieval, rows, ["cmd"], ["grid.png"])
    assert "| image tower, trained (ClipLoss vs frozen MiniLM) | 0.5000 |" in markdown
    assert "Test gallery 4,000 held-out items" in markdown and "[grid.png](grid.png)" in markdown

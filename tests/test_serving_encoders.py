"""Query encoders for serving (baselines/serving/encoders.py) on a tiny random BERT two-tower (no MiniLM, no data)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from baselines.serving import encoders
from baselines.two_tower import search
from baselines.two_tower.model import TwoTower
from baselines.two_tower.queries import generate_benchmark
from mmq import artifacts
from tests.test_query_search import FAST, SMALL, tiny_catalogue

NEEDS = {"onnx": "onnxruntime", "onnx_int8": "onnxruntime", "static": "model2vec"}

QUERIES = ["men navy blue nike t-shirt", "red", "women black titan watches for summer casual wear",
           "peter england shirts", "zzzz"]
TINY_STATIC = encoders.StaticSettings(epochs=3, batch_size=32, num_threads=1, learning_rate=1e-2)


def _tiny_sentence_transformer(directory, words: list[str]):
    """A 2-layer, 32-wide random BERT with a WordPiece vocabulary of the catalogue's words + characters."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    characters = "abcdefghijklmnopqrstuvwxyz0123456789-|'"
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *[f"##{c}" for c in characters],
                  *sorted(set(words) - set(characters))]
    directory.mkdir(parents=True)
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocabulary)}, do_lower_case=True)
    assert len(tokenizer.get_vocab()) == len(vocabulary)
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(str(directory))
    transformer = Transformer(str(directory), max_seq_length=32)
    return SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="mean"), Normalize()], device="cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(tower, config, benchmark, product texts): a tiny two-tower whose query head is not the identity."""
    dataset = tiny_catalogue()
    benchmark = generate_benchmark(dataset, SMALL)
    texts = search.product_texts(dataset)
    words = sorted({word for text in texts for word in re.findall(r"[a-z0-9]+", text.lower())})
    encoder = _tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "bert", words)
    config = dataclasses.replace(FAST, query_max_tokens=12, product_max_tokens=16)
    torch.manual_seed(1)
    model = TwoTower(encoder, shared=True, query_max_tokens=12, product_max_tokens=16, head_hidden=16,
                     trainable_layers=0)
    with torch.no_grad():
        torch.nn.init.normal_(model.query_head.outer.weight, std=0.3)
    return model.eval(), config, benchmark, texts


def _load(kind, world, **kwargs):
    if kind in NEEDS:
        pytest.importorskip(NEEDS[kind])
    model, config, benchmark, texts = world
    return encoders.load_query_encoder(kind, model, config, benchmark=benchmark, product_texts=texts,
                                       static=TINY_STATIC, **kwargs)


@pytest.mark.parametrize("kind", encoders.KINDS)
def test_every_kind_returns_finite_unit_rows(kind, world, isolated_dirs):
    encode = _load(kind, world)
    vectors = encode(QUERIES)
    assert vectors.shape == (len(QUERIES), world[0].dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = encode(["men navy blue nike t-shirt"])
    assert single.shape == (1, world[0].dim)
    # batching and padding do not change a row (int8: activations are quantized per batch, so a little)
    np.testing.assert_allclose(single[0], vectors[0], atol=2e-2 if kind.endswith("int8") else 1e-4)
    assert torch.get_num_threads() == 1


def test_fast_paths_match_the_fp32_tower_and_int8_stays_close(world, isolated_dirs):
    model = world[0]
    texts = [*QUERIES, *world[3][:40]]
    with torch.inference_mode():
        expected = model.encode(texts, "query")
    cosine = {kind: (_load(kind, world)(texts) * expected).sum(axis=1) for kind in ("onnx", "torch_int8", "onnx_int8")}
    assert cosine["onnx"].min() > 0.9999
    assert cosine["torch_int8"].mean() > 0.98 and cosine["onnx_int8"].mean() > 0.98
    assert min(cosine["torch_int8"].min(), cosine["onnx_int8"].min()) > 0.9


def test_the_rust_tokenizer_equals_the_towers_tokenizer_call(world):
    model = world[0]
    texts = [*QUERIES, "a very long query " * 20]
    expected = model.query_encoder.tokenizer(texts, padding=True, truncation=True, max_length=12, return_tensors="np")
    got = encoders.tokenize(encoders.query_tokenizer(model), texts)
    for name in encoders.ONNX_INPUTS:
        np.testing.assert_array_equal(got[name], expected[name])
    assert got["input_ids"].shape[1] == 12


def test_more_texts_than_a_batch_keep_their_order(world, isolated_dirs):
    encode = _load("onnx", world)
    texts = [f"{world[3][i % len(world[3])]} {i}" for i in range(encoders.BATCH_SIZE + 20)]
    together = encode(texts)
    for row in (0, 7, encoders.BATCH_SIZE + 19):
        np.testing.assert_allclose(together[row], encode([texts[row]])[0], atol=1e-4)


def test_onnx_export_is_cached_by_content(world, isolated_dirs, monkeypatch):
    pytest.importorskip("onnxruntime")
    model = world[0]
    first = encoders.onnx_model_path(model, quantized=True)
    monkeypatch.setattr(encoders, "export_onnx", lambda *a: pytest.fail("exported again"))
    assert encoders.onnx_model_path(model, quantized=True) == first
    assert sorted(path.name.split("-")[0] for path in first.parent.glob("*.onnx")) == ["onnx", "onnx_int8"]
    backend = model.query_encoder.tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()                                   # as a freshly loaded tower (serving) has it
    changed = encoders.tower_fingerprint(model)
    with torch.inference_mode():
        model.encode(["a query long enough to be truncated at twelve tokens by the tower"], "query")
    assert encoders.tower_fingerprint(model) == changed    # the tokenizer's last padding / truncation is not content
    with torch.no_grad():
        model.query_head.outer.bias.add_(0.01)
    try:
        assert encoders.tower_fingerprint(model) != changed
    finally:
        with torch.no_grad():
            model.query_head.outer.bias.sub_(0.01)


def test_static_encoder_is_trained_once_then_read_from_its_cache(world, isolated_dirs, monkeypatch):
    model = world[0]
    before = encoders.tower_fingerprint(model)
    calls = []
    train = encoders.train_static
    monkeypatch.setattr(encoders, "train_static", lambda *a, **k: calls.append(1) or train(*a, **k))
    first = _load("static", world)
    assert len(calls) == 1 and first.directory.parent == isolated_dirs / "cache" / "query_encoders"
    again = _load("static", world)
    assert len(calls) == 1 and again.directory == first.directory        # reused, not retrained
    np.testing.assert_allclose(again(QUERIES), first(QUERIES), atol=1e-6)
    assert encoders.tower_fingerprint(model) == before                   # distillation left the tower untouched
    assert not list(first.directory.parent.glob(".static-*"))            # no staging folder left behind
    assert first.directory.stat().st_mode & 0o777 == 0o777 & ~artifacts._umask()
    model_, config, benchmark, texts = world
    encoders.load_query_encoder("static", model, config, benchmark=benchmark, product_texts=texts,
                                static=dataclasses.replace(TINY_STATIC, epochs=1))
    assert len(calls) == 2                                               # other settings: another artifact


def test_static_fine_tuning_moves_toward_the_tower_on_training_texts_only(world, isolated_dirs):
    pytest.importorskip("model2vec")
    model, config, benchmark, product_texts = world
    texts = encoders.static_training_texts(benchmark, product_texts)
    held_out = {query.text for split in ("valid", "test") for query in benchmark.split(split)}
    assert not held_out & set(texts)                                     # valid / test queries are never trained on
    target = encoders.teacher_embeddings(model, config, texts)
    scores = {}
    encoders.train_static(model, config, dataclasses.replace(TINY_STATIC, epochs=5), texts,
                          on_epoch=lambda epoch, encoder: scores.setdefault(epoch, float(
                              (encoder(texts) * target).sum(axis=1).mean())))
    assert sorted(scores) == [0, 1, 2, 3, 4, 5] and scores[5] > scores[0] + 0.05
    no_head = encoders.train_static(model, config, dataclasses.replace(TINY_STATIC, head="none"), texts)
    assert no_head.head is None and np.allclose(np.linalg.norm(no_head(["zzzz", "red"]), axis=1), 1.0, atol=1e-5)


def test_retrieval_quality_scores_a_split_against_the_product_embeddings(world, isolated_dirs):
    model, config, benchmark, texts = world
    products = model.encode(texts, "product")
    encode = encoders.load_query_encoder("torch", model, config)
    quality, embeddings = encoders.retrieval_quality(encode, benchmark, "valid", products, reference=None)
    assert set(quality) == {"ndcg@10", "recall@10"} and 0 <= quality["ndcg@10"] <= 1
    again, _ = encoders.retrieval_quality(encode, benchmark, "valid", products, reference=embeddings)
    assert again["mean_cosine"] == pytest.approx(1.0, abs=1e-5) and again["ndcg@10"] == quality["ndcg@10"]


def test_unknown_kind_and_bad_settings_are_refused(world):
    model, config, *_ = world
    with pytest.raises(ValueError, match="choose one of") as error:
        encoders.load_query_encoder("tensorrt", model, config)
    assert all(kind in str(error.value) for kind in encoders.KINDS)
    with pytest.raises(ValueError, match="num_threads"):
        encoders.load_query_encoder("torch", model, config, num_threads=0)
    for bad in (dict(vocabulary="bpe"), dict(head="mlp"), dict(epochs=-1), dict(sif_coefficient=0.0)):
        with pytest.raises(ValueError):
            encoders.StaticSettings(**bad)

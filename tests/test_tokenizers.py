"""Tokenizer tests: reference loops, properties, round trips, seeds, wrappers, de-dup, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.sid_tokenizers import (
    ModalityAlignedTokenizer,
    ModalitySeparatedTokenizer,
    OPQTokenizer,
    RQKMeansTokenizer,
    RQVAETokenizer,
    RQVAEOutput,
    ResidualQuantizer,
    balanced_assignment,
    load_tokenizer,
    make_modality_tokenizer,
    make_tokenizer,
    split_code_length,
)
from mmq.semantic_ids import append_dedup_digit, dedup_report, quality_report, sid_collision_rate, sid_table_hash
from baselines.sid_tokenizers.opq import pack_codes, unpack_codes

NUM_ITEMS, DIM, CODEBOOK = 613, 23, 16  # odd sizes; DIM not a multiple of 3 (OPQ pads)
TINY_VAE = dict(
    codebook_size=CODEBOOK, latent_dim=8, hidden_dims=(32,), batch_size=128, num_steps=120,
    kmeans_iterations=10, num_threads=1, progress=False,
)


def clustered(num_items: int = NUM_ITEMS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Two-scale Gaussian clusters, L2-normalised (float32)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(12, dim))
    offsets = 0.5 * rng.normal(size=(12 * 6, dim))
    labels = rng.integers(0, 12 * 6, num_items)
    points = centers[labels // 6] + offsets[labels] + 0.2 * rng.normal(size=(num_items, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def tokenizer_for(method: str, num_levels: int = 3):
    if method == "rq_vae":
        return RQVAETokenizer(num_levels=num_levels, **TINY_VAE)
    if method == "rq_kmeans":
        return RQKMeansTokenizer(num_levels=num_levels, codebook_size=CODEBOOK, num_iterations=10)
    return OPQTokenizer(num_subspaces=num_levels, codebook_size=CODEBOOK, opq_iterations=5)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered()


@pytest.fixture(scope="module")
def fitted(data):
    """One fitted tokenizer per method (seed 0), shared by the read-only tests."""
    return {method: tokenizer_for(method).fit(data, seed=0) for method in ("rq_vae", "rq_kmeans", "opq")}


def naive_residual_codes(points: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Per item, per level: nearest codeword to the residual, in float64 Python loops."""
    codes = np.zeros((points.shape[0], codebooks.shape[0]), dtype=np.int64)
    for item, point in enumerate(points.astype(np.float64)):
        residual = point.copy()
        for level, codebook in enumerate(codebooks.astype(np.float64)):
            distances = [float(np.sum((residual - codeword) ** 2)) for codeword in codebook]
            codes[item, level] = int(np.argmin(distances))
            residual -= codebook[codes[item, level]]
    return codes


# --- reference tests -------------------------------------------------------------------------


def test_rq_kmeans_encode_matches_naive_loop(fitted, data):
    tokenizer = fitted["rq_kmeans"]
    np.testing.assert_array_equal(tokenizer.encode(data), naive_residual_codes(data, tokenizer.codebooks))


def test_rq_vae_quantizer_matches_naive_loop(fitted, data):
    model = fitted["rq_vae"].model
    with torch.no_grad():
        latents = model.encoder(torch.from_numpy(data))
        codes = model.quantizer(latents).codes.numpy()
        assigned = model.quantizer.assign(latents).numpy()
    expected = naive_residual_codes(latents.numpy(), model.quantizer.codebooks.detach().numpy())
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(assigned, expected)
    np.testing.assert_array_equal(fitted["rq_vae"].encode(data), expected)


def test_opq_codes_pack_unpack_round_trip():
    rng = np.random.default_rng(3)
    for nbits, num_subspaces in [(4, 3), (8, 3), (5, 7)]:
        codes = rng.integers(0, 2**nbits, size=(37, num_subspaces))
        packed = pack_codes(codes, nbits, code_size=-(-num_subspaces * nbits // 8))
        np.testing.assert_array_equal(unpack_codes(packed, num_subspaces, nbits), codes)


def test_balanced_assignment_respects_capacity_and_matches_nearest_when_loose():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(101, 5)).astype(np.float32)
    centroids = rng.normal(size=(7, 5)).astype(np.float32)
    balanced = balanced_assignment(points, centroids)
    assert np.bincount(balanced, minlength=7).max() <= -(-101 // 7)
    loose = balanced_assignment(points, centroids, capacity=101)
    nearest = ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(loose, nearest)


# --- properties ------------------------------------------------------------------------------


def test_rq_kmeans_more_levels_lower_error(data):
    errors = [
        np.mean((data - (tok := tokenizer_for("rq_kmeans", levels).fit(data, seed=0)).decode(tok.encode(data))) ** 2)
        for levels in (1, 2, 3)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_rq_vae_more_levels_lower_error(fitted, data):
    model = fitted["rq_vae"].model
    with torch.no_grad():
        latents = model.encoder(torch.from_numpy(data))
        codes = model.quantizer.assign(latents)
        codebooks = model.quantizer.codebooks
        partial = torch.zeros_like(latents)
        latent_errors = []
        for level in range(codes.shape[1]):
            partial = partial + codebooks[level][codes[:, level]]
            latent_errors.append(float((latents - partial).square().sum(1).mean()))
    assert latent_errors == sorted(latent_errors, reverse=True)
    one_level = tokenizer_for("rq_vae", 1).fit(data, seed=0)
    error_one = np.mean((data - one_level.decode(one_level.encode(data))) ** 2)
    error_three = np.mean((data - fitted["rq_vae"].decode(fitted["rq_vae"].encode(data))) ** 2)
    assert error_three < error_one


def test_rq_kmeans_round_trips(fitted, data):
    tokenizer = fitted["rq_kmeans"]
    codes = tokenizer.encode(data)
    reconstruction = tokenizer.decode(codes)
    assert reconstruction.dtype == np.float32 and reconstruction.shape == data.shape
    assert np.mean((data - reconstruction) ** 2) < 0.25 * np.mean((data - data.mean(0)) ** 2)
    # encode(decode(c)) == c is not a theorem for residual quantization (later levels' centroids
    # can push the sum across an earlier level's Voronoi boundary), so: almost every row.
    fixed_points = (tokenizer.encode(reconstruction) == codes).all(axis=1)
    assert fixed_points.mean() >= 0.98
    np.testing.assert_array_equal(tokenizer.decode(tokenizer.encode(reconstruction))[fixed_points], reconstruction[fixed_points])


def test_opq_decode_is_close(fitted, data):
    reconstruction = fitted["opq"].decode(fitted["opq"].encode(data))
    assert reconstruction.shape == data.shape
    assert np.mean((data - reconstruction) ** 2) < 0.5 * np.mean((data - data.mean(0)) ** 2)


@pytest.mark.parametrize("method", ["rq_vae", "rq_kmeans", "opq"])
def test_protocol_shapes_and_quality_report(fitted, data, method):
    tokenizer = fitted[method]
    codes = tokenizer.encode(data)
    assert codes.dtype == np.int64 and codes.shape == (NUM_ITEMS, 3)
    assert tokenizer.code_length == 3 and tokenizer.codebook_sizes == (CODEBOOK,) * 3
    assert codes.min() >= 0 and codes.max() < CODEBOOK
    report = quality_report(tokenizer, data)
    assert report["reconstruction_l2_sq"] == pytest.approx(report["reconstruction_mse"] * DIM, rel=1e-6)
    assert len(report["items_per_code"]) == 3
    assert sum(1 for _ in report["semantic_id_quality"]["utilization_per_position"]) == 3


def test_rq_vae_forward_output_and_weighted_total(fitted, data):
    model = fitted["rq_vae"].model
    with torch.no_grad():
        output = model(torch.from_numpy(data[:50]))
    assert isinstance(output, RQVAEOutput)
    losses = output.losses
    expected = losses["reconstruction"] + losses["codebook"] + 0.25 * losses["commitment"]
    assert float(losses["total"]) == pytest.approx(float(expected), rel=1e-5)


def test_residual_quantizer_ema_mode_updates_codebooks():
    torch.manual_seed(0)
    quantizer = ResidualQuantizer(num_levels=2, codebook_size=4, dim=3, use_ema=True)
    before = quantizer.codebooks.detach().clone()
    output = quantizer(torch.randn(32, 3))
    assert not quantizer.codebooks.requires_grad
    assert float(output.losses["codebook"]) == 0.0
    assert not torch.equal(before, quantizer.codebooks)
    quantizer.eval()
    frozen = quantizer.codebooks.detach().clone()
    quantizer(torch.randn(32, 3))
    assert torch.equal(frozen, quantizer.codebooks)


# --- seeds and persistence -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rq_vae", "rq_kmeans", "opq"])
def test_same_seed_same_ids_different_seed_different(fitted, data, method):
    reference = fitted[method].encode(data)
    np.testing.assert_array_equal(tokenizer_for(method).fit(data, seed=0).encode(data), reference)
    other = tokenizer_for(method).fit(data, seed=1).encode(data)
    assert (other != reference).any()


@pytest.mark.parametrize("method", ["rq_vae", "rq_kmeans", "opq"])
def test_save_load_round_trip(fitted, data, method, tmp_path):
    fitted[method].save(tmp_path / method)
    loaded = type(fitted[method]).load(tmp_path / method)
    np.testing.assert_array_equal(loaded.encode(data), fitted[method].encode(data))
    codes = fitted[method].encode(data[:20])
    np.testing.assert_allclose(loaded.decode(codes), fitted[method].decode(codes), atol=1e-6)
    assert type(load_tokenizer(tmp_path / method)) is type(fitted[method])
    assert not list((tmp_path / method).glob("*.tmp"))


# --- modality wrappers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def modalities():
    return {"text": clustered(seed=1), "image": 3.0 * clustered(dim=17, seed=2)}


def test_split_code_length():
    assert split_code_length(3, 2) == (2, 1)
    assert split_code_length(6, 2) == (3, 3)
    assert split_code_length(7, 3) == (3, 2, 2)
    with pytest.raises(ValueError):
        split_code_length(1, 2)


@pytest.mark.parametrize("method", ["rq_kmeans", "opq"])
def test_ma_and_ms_code_lengths_and_save_load(modalities, method, tmp_path):
    hyper = dict(codebook_size=CODEBOOK)
    aligned = make_modality_tokenizer("ma", method, code_length=3, **hyper).fit(modalities, seed=0)
    separated = make_modality_tokenizer("ms", method, code_length=3, **hyper).fit(modalities, seed=0)
    uneven = ModalitySeparatedTokenizer(method=method, code_length=4, code_length_split=(1, 3), **hyper)
    uneven.fit(modalities, seed=0)
    for wrapper, lengths in [(aligned, (3,)), (separated, (2, 1)), (uneven, (1, 3))]:
        codes = wrapper.encode(modalities)
        assert codes.shape == (NUM_ITEMS, sum(lengths)) == (NUM_ITEMS, wrapper.code_length)
        assert len(wrapper.codebook_sizes) == wrapper.code_length
        decoded = wrapper.decode(codes)
        assert {name: array.shape for name, array in decoded.items()} == {"text": (NUM_ITEMS, DIM), "image": (NUM_ITEMS, 17)}
        wrapper.save(tmp_path / type(wrapper).__name__)
        np.testing.assert_array_equal(load_tokenizer(tmp_path / type(wrapper).__name__).encode(modalities), codes)
    # MS codes are the per-modality tokenizers' codes, concatenated in modality order
    prepared = separated.prepare(modalities)
    np.testing.assert_array_equal(
        separated.encode(modalities)[:, 2:], separated.tokenizers["image"].encode(prepared["image"])
    )
    assert np.allclose(np.linalg.norm(prepared["image"], axis=1), 1.0, atol=1e-5)
    assert quality_report(aligned, modalities)["code_length"] == 3


def test_factory_and_modality_validation(modalities):
    assert isinstance(make_tokenizer("opq", code_length=5, codebook_size=16), OPQTokenizer)
    assert make_tokenizer("rq_vae", code_length=4).code_length == 4
    with pytest.raises(ValueError, match="unknown tokenizer method"):
        make_tokenizer("vq")
    with pytest.raises(ValueError, match="sum to code_length"):
        ModalitySeparatedTokenizer(method="rq_kmeans", code_length=3, code_length_split=(1, 1))
    wrapper = ModalityAlignedTokenizer(method="rq_kmeans", codebook_size=CODEBOOK).fit(modalities, seed=0)
    with pytest.raises(ValueError, match="missing modalities"):
        wrapper.encode({"text": modalities["text"]})
    with pytest.raises(ValueError, match="number of items"):
        wrapper.encode({"text": modalities["text"], "image": modalities["image"][:10]})
    with pytest.raises(ValueError, match="dimension mismatch"):
        wrapper.encode({"text": modalities["text"][:, :5], "image": modalities["image"]})


# --- de-dup digit ----------------------------------------------------------------------------


def test_dedup_digit_unique_and_prefix_preserving():
    codes = np.array([[1, 2], [0, 0], [1, 2], [3, 4], [1, 2], [0, 0], [5, 5]])
    deduplicated = append_dedup_digit(codes)
    assert deduplicated.shape == (7, 3)
    np.testing.assert_array_equal(deduplicated[:, :2], codes)
    np.testing.assert_array_equal(deduplicated[:, 2], [0, 0, 1, 0, 2, 1, 0])
    assert np.unique(deduplicated, axis=0).shape[0] == 7
    report = dedup_report(codes)
    assert report["collision_rate_before"] == pytest.approx(5 / 7)
    assert report["collision_rate_after"] == 0.0 and report["dedup_digit_size"] == 3
    assert sid_collision_rate(codes) == pytest.approx(5 / 7)


def test_dedup_on_tokenizer_codes(fitted, data):
    codes = fitted["rq_kmeans"].encode(data)
    deduplicated = append_dedup_digit(codes)
    assert sid_collision_rate(deduplicated) == 0.0
    unique_rows = np.unique(codes, axis=0, return_counts=True)
    singletons = {tuple(row) for row, count in zip(*unique_rows) if count == 1}
    is_singleton = np.array([tuple(row) in singletons for row in codes])
    assert (deduplicated[is_singleton, -1] == 0).all()


def test_sid_table_hash_stable_and_sensitive():
    codes = np.arange(12).reshape(4, 3)
    assert sid_table_hash(codes) == sid_table_hash(codes.astype(np.int32))
    assert sid_table_hash(codes) != sid_table_hash(codes.reshape(3, 4))
    changed = codes.copy()
    changed[0, 0] = 99
    assert sid_table_hash(codes) != sid_table_hash(changed)
    assert len(sid_table_hash(codes)) == 64


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rq_vae", "rq_kmeans", "opq"])
def test_bad_input_raises_value_error(fitted, data, method):
    tokenizer = fitted[method]
    with pytest.raises(ValueError, match="2-D"):
        tokenizer.encode(data[0])
    with_nan = data.copy()
    with_nan[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        tokenizer.encode(with_nan)
    with pytest.raises(ValueError, match="NaN or inf"):
        tokenizer_for(method).fit(with_nan, seed=0)
    with pytest.raises(ValueError, match="dimension mismatch"):
        tokenizer.encode(data[:, :-1])
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode(np.full((2, 3), CODEBOOK))
    with pytest.raises(ValueError, match="shape"):
        tokenizer.decode(np.zeros((2, 4), dtype=np.int64))


def test_bad_hyper_parameters_raise():
    with pytest.raises(ValueError, match="power of two"):
        OPQTokenizer(codebook_size=100)
    with pytest.raises(ValueError, match="codebook_update"):
        RQVAETokenizer(codebook_update="sgd")
    with pytest.raises(RuntimeError, match="not fitted"):
        RQKMeansTokenizer().encode(np.zeros((2, 3), dtype=np.float32))

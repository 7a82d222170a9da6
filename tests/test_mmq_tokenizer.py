"""MMQ stage-1 tokenizer: gates, losses, quantizer, ablation flags, determinism, round trips, end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mmq.mmq_tokenizer import ExpertCodebooks, MMQConfig, MMQModel, MMQTokenizer
from mmq.mmq_tokenizer.losses import orthogonality_loss
from mmq.semantic_ids.base import Tokenizer, quality_report

torch.set_num_threads(1)
DIMS = {"text": 12, "image": 7}  # odd, unequal modality widths
TINY = MMQConfig(codebook_size=8, code_dim=16, gate_hidden_dim=8, decoder_hidden_dims=(16,), num_steps=40,
                 batch_size=32, restart_every=10, kmeans_iterations=5, progress=False)


def synthetic(num_items: int = 120, seed: int = 0) -> dict[str, np.ndarray]:
    """Clustered text and image vectors sharing a latent cluster id."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 6, num_items)
    return {name: (rng.normal(size=(6, dim))[clusters]
                   + 0.3 * rng.normal(size=(num_items, dim))).astype(np.float32) for name, dim in DIMS.items()}


def tensors(data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.nn.functional.normalize(torch.from_numpy(array), dim=1) for name, array in data.items()}


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def fitted(data):
    return MMQTokenizer(TINY).fit(data, seed=0)


def test_gates_sum_to_one_and_shared_weigh_one(data):
    torch.manual_seed(0)
    model = MMQModel(config=TINY, input_dims=DIMS)
    weights = model.expert_latents(tensors(data)).weights  # [n, 6]: shared_0, shared_1, text_0, text_1, image_0, image_1
    assert weights.shape == (120, 6)
    torch.testing.assert_close(weights[:, :2], torch.ones(120, 2))
    torch.testing.assert_close(weights[:, 2:4].sum(1), torch.ones(120))
    torch.testing.assert_close(weights[:, 4:6].sum(1), torch.ones(120))
    assert TINY.expert_names() == ("shared_0", "shared_1", "text_0", "text_1", "image_0", "image_1")


def test_orthogonality_loss_zero_for_orthonormal_positive_for_duplicates():
    first, second = torch.zeros(4, 4), torch.zeros(4, 4)
    first[:2], second[2:] = torch.randn(2, 4), torch.randn(2, 4)  # disjoint supports: orthogonal after flattening
    assert orthogonality_loss([torch.stack([first, second])]).item() == pytest.approx(0.0, abs=1e-10)
    duplicated = torch.stack([first, first])
    assert orthogonality_loss([duplicated]).item() == pytest.approx(2.0, rel=1e-5)  # two off-diagonal ones
    # summed over groups; a single-expert group contributes nothing
    assert orthogonality_loss([duplicated, first[None]]).item() == pytest.approx(2.0, rel=1e-5)


def test_cosine_lookup_is_scale_invariant_l2_is_not():
    torch.manual_seed(0)
    latents = torch.randn(64, 3, 8)
    cosine = ExpertCodebooks(num_experts=3, codebook_size=10, dim=8, lookup="cosine")
    assert torch.equal(cosine.assign(latents), cosine.assign(latents * 37.0))
    assert torch.equal(cosine.assign(latents), cosine.assign(latents * 0.01))
    l2 = ExpertCodebooks(num_experts=3, codebook_size=10, dim=8, lookup="l2")
    l2.load_state_dict(cosine.state_dict())
    assert not torch.equal(l2.assign(latents), l2.assign(latents * 37.0))
    # logits are the cosine similarities themselves (the stage-2 hook)
    logits = cosine.logits(latents)
    expected = torch.nn.functional.cosine_similarity(latents[:, 1, None, :], cosine.codebooks[1][None], dim=-1)
    torch.testing.assert_close(logits[:, 1], expected, rtol=1e-5, atol=1e-5)


def test_gradients_reach_every_expert_gate_decoder_and_codebook(data):
    torch.manual_seed(0)
    model = MMQModel(config=TINY, input_dims=DIMS)
    model(tensors(data)).losses["total"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_losses_are_named_and_weighted(data):
    torch.manual_seed(0)
    model = MMQModel(config=TINY, input_dims=DIMS)
    losses = model(tensors(data)).losses
    assert set(losses) == {"reconstruction", "auxiliary", "orthogonality", "codebook", "commitment", "gate_balance",
                           "total"}
    expected = (12 * losses["reconstruction"] + 10 * losses["auxiliary"] + 0.005 * losses["orthogonality"]
                + losses["codebook"] + 0.25 * losses["commitment"] + losses["gate_balance"])
    torch.testing.assert_close(losses["total"], expected)


@pytest.mark.parametrize("field, value, loss", [("auxiliary_weight", 0.0, "auxiliary"),
                                                ("orthogonality_weight", 0.0, "orthogonality")])
def test_loss_weight_flags_remove_exactly_their_term(data, field, value, loss):
    torch.manual_seed(0)
    full = MMQModel(config=TINY, input_dims=DIMS)
    ablated = MMQModel(config=dataclasses.replace(TINY, **{field: value}), input_dims=DIMS)
    ablated.load_state_dict(full.state_dict())
    inputs = tensors(data)
    full_losses, ablated_losses = full(inputs).losses, ablated(inputs).losses
    weight = getattr(TINY, field)
    torch.testing.assert_close(ablated_losses["total"], full_losses["total"] - weight * full_losses[loss])
    for name in set(full_losses) - {"total"}:  # every term is still computed and logged
        torch.testing.assert_close(ablated_losses[name], full_losses[name])


def test_structure_flags_change_what_they_name(data):
    l2 = MMQModel(config=dataclasses.replace(TINY, lookup="l2"), input_dims=DIMS)
    assert l2.quantizer.lookup == "l2" and sum(p.numel() for p in l2.parameters()) == sum(
        p.numel() for p in MMQModel(config=TINY, input_dims=DIMS).parameters())
    specific_only = dataclasses.replace(TINY, num_shared_experts=0, num_specific_experts=(3, 2))
    model = MMQModel(config=specific_only, input_dims=DIMS)
    assert model.shared is None and specific_only.num_experts == 5
    assert specific_only.expert_names() == ("text_0", "text_1", "text_2", "image_0", "image_1")
    weights = model.expert_latents(tensors(data)).weights
    torch.testing.assert_close(weights.sum(1), torch.full((120,), 2.0))  # two modality gates, no shared ones
    for count in (3, 4, 5, 6):
        longer = dataclasses.replace(TINY, num_shared_experts=count, num_specific_experts=(count, count))
        assert MMQTokenizer(longer).code_length == 3 * count
    with pytest.raises(ValueError, match="lookup"):
        dataclasses.replace(TINY, lookup="dot")
    with pytest.raises(ValueError, match="one count per modality"):
        dataclasses.replace(TINY, num_specific_experts=(2,))


def test_protocol_shapes_quality_report_and_stage2_logits(fitted, data):
    assert isinstance(fitted, Tokenizer)
    codes = fitted.encode(data)
    assert codes.shape == (120, 6) and codes.dtype == np.int64 and codes.max() < 8
    assert fitted.codebook_sizes == (8,) * 6
    logits = fitted.expert_logits(data)
    assert logits.shape == (120, 6, 8)
    np.testing.assert_array_equal(logits.argmax(-1), codes)
    assert np.abs(logits).max() <= 1.0 + 1e-5  # cosine similarities
    decoded = fitted.decode(codes)
    assert {name: array.shape for name, array in decoded.items()} == {"text": (120, 12), "image": (120, 7)}
    report = quality_report(fitted, data)
    assert report["code_length"] == 6 and report["reconstruction_l2_sq"] > 0
    assert 0 < report["semantic_id_quality"]["utilization_mean"] <= 1
    gated = fitted.gated_reconstruction_error(data)
    assert set(gated) == {"reconstruction_gated", "auxiliary_gated"}
    assert fitted.training_log and "total" in fitted.training_log[-1]


def test_cosine_codes_ignore_input_scale(fitted, data):
    scaled = {name: array * 5.0 for name, array in data.items()}
    np.testing.assert_array_equal(fitted.encode(scaled), fitted.encode(data))


def test_same_seed_same_ids_different_seed_different(fitted, data):
    np.testing.assert_array_equal(MMQTokenizer(TINY).fit(data, seed=0).encode(data), fitted.encode(data))
    assert not np.array_equal(MMQTokenizer(TINY).fit(data, seed=1).encode(data), fitted.encode(data))


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "mmq")
    loaded = MMQTokenizer.load(tmp_path / "mmq")
    assert loaded.config == fitted.config
    codes = fitted.encode(data)
    np.testing.assert_array_equal(loaded.encode(data), codes)
    for name, array in fitted.decode(codes).items():
        np.testing.assert_array_equal(loaded.decode(codes)[name], array)


def test_ema_codebook_update_mode_trains(data):
    tokenizer = MMQTokenizer(TINY, codebook_update="ema", num_steps=15).fit(data, seed=0)
    assert not tokenizer.model.quantizer.codebooks.requires_grad
    assert tokenizer.encode(data).shape == (120, 6)


def test_bad_input_raises_clear_value_error(fitted, data):
    with pytest.raises(ValueError, match="NaN"):
        broken = dict(data, text=data["text"].copy())
        broken["text"][3, 0] = np.nan
        fitted.encode(broken)
    with pytest.raises(ValueError, match="missing modalities"):
        fitted.encode({"text": data["text"]})
    with pytest.raises(ValueError, match="dimension mismatch"):
        fitted.encode(dict(data, image=np.zeros((120, 9), np.float32)))
    with pytest.raises(ValueError, match="number of items"):
        fitted.encode(dict(data, image=data["image"][:50]))
    with pytest.raises(ValueError, match="codebook_size"):
        MMQTokenizer(TINY).fit({name: array[:5] for name, array in data.items()})
    with pytest.raises(RuntimeError, match="not fitted"):
        MMQTokenizer(TINY).encode(data)


def test_end_to_end_script_run(isolated_dirs, data, monkeypatch):
    from mmq import registry
    from mmq.mmq_tokenizer import experiment
    from scripts.run import main

    monkeypatch.setattr(experiment, "load_item_modalities",
                        lambda config: (data, {"dataset": "synthetic", "num_items": 120}))
    config_path = isolated_dirs / "tiny_mmq.yaml"
    config_path.write_text(json.dumps({"kind": "mmq_tokenizer", "mmq": {
        **{key: value for key, value in dataclasses.asdict(TINY).items()
           if key in ("codebook_size", "code_dim", "gate_hidden_dim", "num_steps", "batch_size", "restart_every")},
        "decoder_hidden_dims": [16], "progress": False}}))
    assert main([str(config_path), "--seeds", "0"]) == 0
    run = registry.run_directory(config_path, 0)
    report = json.loads((run / "report.json").read_text())
    assert (run / "DONE").exists() and (run / "tokenizer" / "model.pt").exists()
    semantic_ids = np.load(run / "semantic_ids.npy")
    assert semantic_ids.shape == (120, 7) and np.unique(semantic_ids, axis=0).shape[0] == 120  # + de-dup digit
    metrics = report["metrics"]
    assert metrics["quality"]["code_length"] == 6 and metrics["mmq"]["expert_names"][0] == "shared_0"
    assert metrics["semantic_id_table"]["shape"] == [120, 7]
    loaded = MMQTokenizer.load(run / "tokenizer")
    np.testing.assert_array_equal(loaded.encode(data), semantic_ids[:, :6])


def test_table_rows_aggregate_seeds_and_read_paper_reference():
    from mmq.mmq_tokenizer.table import TABLE_ROWS, paper_rows, report_values, table_rows
    from mmq.runs import REPOSITORY_ROOT

    def report(utilization: float) -> dict:
        quality = {"entropy_mean": 4.0, "utilization_mean": utilization, "utilization_per_position": [utilization, 1.0]}
        return {"metrics": {"quality": {"reconstruction_l2_sq": 0.5, "semantic_id_quality": quality},
                            "dedup": {"collision_rate_before": 0.01}, "fit_seconds": 10.0,
                            "mmq": {"reconstruction_gated": 0.4}}}

    assert report_values(report(0.9))["utilization_min"] == 0.9
    rows = {(row["metric"]): row for row in table_rows({TABLE_ROWS[6]: [report(0.9), report(1.0)]})}
    assert TABLE_ROWS[6].label == "MMQ" and rows["utilization_mean"]["mean"] == pytest.approx(0.95)
    assert rows["utilization_mean"]["n_seeds"] == 2 and rows["reconstruction_gated"]["mean"] == 0.4
    paper = paper_rows(REPOSITORY_ROOT / "paper_tables" / "paper_reference" / "mmq_paper.csv")
    lookup = {(row["method"], row["metric"]): row["mean"] for row in paper}
    assert lookup[("MMQ", "utilization_mean")] == 1.0
    assert lookup[("ablation: w/o cosine quantizer", "utilization_mean")] == 0.59

"""MMQ stage 2, shared by every task: the soft straight-through index, SID embeddings, trainable and
frozen SID sources (MMQ and MA-RQ-VAE), and the one stage-2 objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.sid_tokenizers.stage2 import RQVAECodes
from mmq.finetune.objective import BehaviorFinetuneConfig, stage2_loss, tokenizer_parameter_group
from mmq.finetune.soft_index import SidEmbedding, one_hot_codes, soft_straight_through
from mmq.finetune.sources import FrozenCodes, MMQCodes, NoCodes
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer


def test_soft_straight_through_is_hard_forward_and_soft_backward():
    logits = torch.tensor([[0.1, 0.9, 0.3], [0.5, -0.2, 0.4]], requires_grad=True)
    indices = soft_straight_through(logits, tau=0.5)
    assert torch.equal(indices.detach(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    weights = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    (indices * weights).sum().backward()
    reference = logits.detach().clone().requires_grad_(True)
    (torch.softmax(reference / 0.5, dim=-1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, reference.grad)
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="tau"):
        soft_straight_through(logits, tau=0.0)


def test_sid_embedding_of_one_hot_indices_equals_a_table_lookup():
    embedding = SidEmbedding((5, 3), dim=4)
    codes = torch.tensor([[4, 2], [0, 1], [3, 0]])
    output = embedding(one_hot_codes(codes, 5))
    expected = torch.stack([embedding.tables[0, codes[:, 0]], embedding.tables[1, codes[:, 1]]], dim=1)
    torch.testing.assert_close(output, expected)
    with pytest.raises(ValueError, match=r"\[n, 2, 5\]"):
        embedding(torch.zeros(3, 2, 4))


def test_mmq_source_reproduces_stage1_codes_and_passes_gradients_to_every_part(fitted_mmq):
    tokenizer, data = fitted_mmq
    live = MMQTokenizer(tokenizer.config)
    live.model, live.dims = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims), dict(tokenizer.dims)
    live.model.load_state_dict(tokenizer.model.state_dict())
    source = MMQCodes(live.model, live.prepare(data), tau=0.1)
    np.testing.assert_array_equal(source.codes(), tokenizer.encode(data))
    output = source(torch.arange(20), with_losses=True)
    assert output.indices.shape == (20, 6, 8) and set(output.losses) == {"reconstruction", "auxiliary"}
    downstream = SidEmbedding((8,) * 6, dim=3)
    (downstream(output.indices).square().sum() + output.losses["reconstruction"] + output.losses["auxiliary"]).backward()
    model = source.model
    for name, parameter in [("shared", model.shared.final_weights), ("gate", next(model.gates["text"].parameters())),
                            ("codebooks", model.quantizer.codebooks), ("decoder", next(model.decoder.parameters()))]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert source.trainable and "input_text" not in source.state_dict()  # cached features stay out of checkpoints


def test_downstream_loss_alone_reaches_the_experts_through_soft_indices(fitted_mmq):
    tokenizer, data = fitted_mmq
    model = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims)
    model.load_state_dict(tokenizer.model.state_dict())
    source = MMQCodes(model, tokenizer.prepare(data), tau=0.1)
    SidEmbedding((8,) * 6, dim=3)(source(torch.arange(30)).indices).sum().backward()
    assert model.specific["image"].final_weights.grad.abs().sum() > 0
    assert model.decoder[0].weight.grad is None  # no L_recon asked: the decoder is untouched


def test_rq_vae_source_matches_the_tokenizer_and_trains_the_encoder(fitted_mmq):
    from baselines.sid_tokenizers.modality import make_modality_tokenizer

    _, data = fitted_mmq
    tokenizer = make_modality_tokenizer("ma", "rq_vae", code_length=3, codebook_size=8, num_steps=30, batch_size=32,
                                        modalities=("text", "image"))
    tokenizer.fit(data, seed=0)
    prepared = tokenizer.prepare(data)
    source = RQVAECodes(tokenizer.tokenizer.model, np.concatenate([prepared["text"], prepared["image"]], axis=1), 0.1)
    np.testing.assert_array_equal(source.codes(), tokenizer.encode(data))
    output = source(torch.arange(25), with_losses=True)
    (output.indices * torch.randn_like(output.indices)).sum().add(output.losses["reconstruction"]).backward()
    assert next(source.model.encoder.parameters()).grad.abs().sum() > 0
    assert float(output.losses["auxiliary"]) == 0.0
    source.configure_stage2(anchor_codes=tokenizer.encode(data), freeze_codebooks=True)
    output = source(torch.arange(25), with_losses=True)
    assert 0 < float(output.losses["stability"]) and not source.model.quantizer.codebooks.requires_grad
    assert source.item_vectors(output.indices).shape == (25, 3 * source.model.quantizer.codebooks.shape[-1])
    with pytest.raises(ValueError, match="stability_weight"):
        source.configure_stage2(stage1_terms=True)


def test_frozen_and_absent_codes_never_train():
    codes = np.array([[0, 2], [1, 1], [3, 0]])
    source = FrozenCodes(codes, (4, 3))
    assert not source.trainable and not list(source.parameters())
    assert source(torch.tensor([2, 0])).indices.argmax(-1).tolist() == [[3, 0], [0, 2]]
    np.testing.assert_array_equal(source.codes(), codes)
    with pytest.raises(ValueError, match="outside the codebooks"):
        FrozenCodes(np.array([[0, 3]]), (4, 3))
    with pytest.raises(ValueError, match=r"\[items, 2\]"):
        FrozenCodes(np.array([0, 1]), (4, 3))
    assert NoCodes(5)(torch.arange(3)).indices is None


def test_stage2_loss_weights_the_tokenizer_terms_and_keeps_every_term_named():
    task, reconstruction, auxiliary = torch.tensor(2.0), torch.tensor(0.4), torch.tensor(0.2)
    config = BehaviorFinetuneConfig(reconstruction_weight=0.5, auxiliary_weight=0.25)
    total, terms = stage2_loss("ranking", task, {"reconstruction": reconstruction, "auxiliary": auxiliary}, config)
    assert float(total) == pytest.approx(2.0 + 0.5 * 0.4 + 0.25 * 0.2)
    assert set(terms) == {"ranking", "reconstruction", "auxiliary"} and terms["reconstruction"] is reconstruction
    frozen_total, frozen_terms = stage2_loss("generation", task, {}, config)  # frozen SIDs: the task loss alone
    assert frozen_total is task and frozen_terms == {"generation": task}
    with pytest.raises(ValueError, match="tau"):
        BehaviorFinetuneConfig(tau=0.0)


def test_tokenizer_parameter_group_scales_the_learning_rate(fitted_mmq):
    tokenizer, data = fitted_mmq
    source = MMQCodes(tokenizer.model, tokenizer.prepare(data), tau=0.1)
    group = tokenizer_parameter_group(source, 1e-3, BehaviorFinetuneConfig(tokenizer_lr_ratio=0.01), weight_decay=0.0)
    assert group["lr"] == pytest.approx(1e-5) and group["weight_decay"] == 0.0
    assert len(group["params"]) == len([p for p in tokenizer.model.parameters() if p.requires_grad])


def test_stage2_sources_come_from_the_tokenizers(fitted_mmq):
    from baselines.sid_tokenizers.modality import make_modality_tokenizer

    tokenizer, data = fitted_mmq
    assert isinstance(tokenizer.stage2_source(data, tau=0.1), MMQCodes)
    ma_kmeans = make_modality_tokenizer("ma", "rq_kmeans", code_length=2, codebook_size=4, modalities=("text", "image"))
    ma_kmeans.fit(data, seed=0)
    with pytest.raises(ValueError, match="learned lookup"):
        ma_kmeans.stage2_source(data, tau=0.1)
    ms = make_modality_tokenizer("ms", "rq_kmeans", code_length=2, codebook_size=4, modalities=("text", "image"))
    assert not hasattr(ms, "stage2_source")

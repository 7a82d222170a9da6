"""Balance metrics of semantic IDs (docs/method.md §3.3) and the cross-group L_ortho option (§2.6.3)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from mmq.metrics.semantic_ids import (BALANCE_COLUMNS, balance_columns, bucket_gini, code_perplexity,
                                      gini_coefficient, largest_bucket, largest_prefix_bucket,
                                      position_mutual_information, semantic_id_quality)
from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.experts import EXPERT_TYPES, MLPExperts
from mmq.mmq_tokenizer.losses import orthogonality_loss
from mmq.mmq_tokenizer.model import MMQModel


# --- balance metrics ---------------------------------------------------------------------------


def naive_gini(sizes) -> float:
    """sum_ij |x_i - x_j| / (2 n^2 mean): the definition, as a double loop."""
    sizes = [float(size) for size in sizes]
    total = sum(abs(left - right) for left, right in itertools.product(sizes, sizes))
    return total / (2 * len(sizes) ** 2 * (sum(sizes) / len(sizes)))


def test_gini_of_equal_buckets_is_zero_and_of_one_full_bucket_is_k_minus_1_over_k():
    assert gini_coefficient(np.full(7, 3)) == pytest.approx(0.0, abs=1e-12)
    for k in (2, 5, 13):
        sizes = np.zeros(k)
        sizes[k // 2] = 11
        assert gini_coefficient(sizes) == pytest.approx((k - 1) / k)


def test_gini_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    for _ in range(5):
        sizes = rng.integers(0, 9, size=rng.integers(2, 12))
        sizes[0] += 1  # positive sum
        assert gini_coefficient(sizes) == pytest.approx(naive_gini(sizes))
    assert gini_coefficient([1, 3]) == pytest.approx(0.25)  # |1-3|*2 / (2*4*2)
    with pytest.raises(ValueError, match="positive sum"):
        gini_coefficient([0, 0])


def test_bucket_gini_counts_unused_codes_as_empty_buckets():
    codes = np.array([[0], [0], [1], [1]])  # K = 4: sizes [2, 2, 0, 0]
    assert bucket_gini(codes, 4) == pytest.approx([naive_gini([2, 2, 0, 0])])
    assert bucket_gini(codes, 4)[0] == pytest.approx(0.5)
    assert bucket_gini(codes, 2) == pytest.approx([0.0])  # same codes, K = 2: perfectly balanced


def test_perplexity_of_a_uniform_code_is_k_and_of_a_constant_code_is_1():
    k = 6
    codes = np.stack([np.tile(np.arange(k), 3), np.zeros(3 * k, dtype=int)], axis=1)
    assert code_perplexity(codes) == pytest.approx([k, 1.0])
    skewed = np.array([[0], [0], [0], [1]])  # p = (3/4, 1/4)
    expected = np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))
    assert code_perplexity(skewed) == pytest.approx([expected])


def test_largest_bucket_and_prefix_buckets_hand_computed():
    codes = np.array([[0, 0, 1],
                      [0, 0, 1],
                      [0, 1, 0],
                      [1, 1, 0],
                      [2, 1, 0]])
    assert largest_bucket(codes).tolist() == [3, 3, 3]
    # prefixes: (0) x3; (0,0) x2; (0,0,1) x2
    assert largest_prefix_bucket(codes).tolist() == [3, 2, 2]


def test_quality_report_adds_balance_keys_and_keeps_the_old_ones():
    codes = np.array([[0, 1], [0, 2], [1, 3], [0, 3]])
    summary = semantic_id_quality(codes, 4)
    # existing keys and values unchanged
    assert summary["utilization_per_position"] == pytest.approx([0.5, 0.75])
    assert summary["collision_rate"] == 0.0 and summary["unique_ids"] == 4 and summary["num_items"] == 4
    # position 0 sizes [3, 1, 0, 0]; position 1 sizes [0, 1, 1, 2]
    assert summary["largest_bucket_per_position"] == [3, 2]
    assert summary["largest_bucket_mean"] == pytest.approx(2.5)
    assert summary["largest_bucket_fraction_per_position"] == pytest.approx([0.75, 0.5])
    assert summary["largest_bucket_fraction_mean"] == pytest.approx(0.625)
    gini = [naive_gini([3, 1, 0, 0]), naive_gini([0, 1, 1, 2])]
    assert summary["gini_per_position"] == pytest.approx(gini)
    assert summary["gini_mean"] == pytest.approx(np.mean(gini))
    assert summary["perplexity_per_position"] == pytest.approx(np.exp(summary["entropy_per_position"]))
    assert summary["perplexity_mean"] == pytest.approx(np.mean(summary["perplexity_per_position"]))
    assert summary["largest_prefix_bucket_per_level"] == [3, 1]
    assert summary["largest_prefix_bucket_fraction_per_level"] == pytest.approx([0.75, 0.25])


# --- L_ortho scope -----------------------------------------------------------------------------


def orthogonal_groups(sizes: tuple[int, ...], dim: int = 3) -> list[torch.Tensor]:
    """Groups of d x d weights, every expert a distinct one-hot matrix (mutually orthogonal, also across groups)."""
    basis = torch.eye(dim * dim).reshape(dim * dim, dim, dim)  # [d*d, d, d]
    groups, start = [], 0
    for size in sizes:
        groups.append(3.0 * basis[start:start + size])  # scale must not matter: rows are normalised
        start += size
    return groups


def test_balance_columns_read_the_worst_position_and_skip_old_summaries():
    codes = np.array([[0, 0], [0, 1], [0, 2], [1, 0]])      # position 0: buckets 3 / 1; position 1: 2 / 1 / 1
    columns = balance_columns(semantic_id_quality(codes, 4))
    assert set(columns) == set(BALANCE_COLUMNS)
    assert columns["largest_bucket_max"] == 3 and columns["largest_sid_bucket"] == 1
    assert columns["perplexity_min"] == pytest.approx(float(code_perplexity(codes).min()))
    assert balance_columns({"entropy_mean": 1.0}) == {}


def test_position_mutual_information_is_one_for_copies_and_near_zero_for_independent_codes():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 8, size=5000)
    codes = np.stack([first, (first + 3) % 8, rng.integers(0, 8, size=5000)], axis=1)
    matrix = position_mutual_information(codes)
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == pytest.approx(1.0) and matrix[0, 2] < 0.01
    with pytest.raises(ValueError, match="2-D"):
        position_mutual_information(first)


def test_cross_group_is_zero_for_mutually_orthogonal_experts():
    groups = orthogonal_groups((2, 2, 3))
    assert orthogonality_loss(groups, scope="cross_group").item() == pytest.approx(0.0, abs=1e-12)
    assert orthogonality_loss(groups).item() == pytest.approx(0.0, abs=1e-12)


def test_cross_group_penalises_a_shared_and_a_specific_expert_that_coincide():
    shared, text = orthogonal_groups((2, 2))
    text = text.clone()
    text[0] = 2.0 * shared[0]  # same direction as shared expert 0, in another group
    within = orthogonality_loss([shared, text], scope="within_group")
    cross = orthogonality_loss([shared, text], scope="cross_group")
    assert within.item() == pytest.approx(0.0, abs=1e-12)
    assert cross.item() == pytest.approx(2.0)  # one pair with cosine 1, counted twice


def test_cross_group_equals_the_naive_sum_of_squared_cosines_over_all_pairs():
    generator = torch.Generator().manual_seed(0)
    groups = [torch.randn(count, 4, 4, generator=generator) for count in (2, 1, 3)]
    rows = torch.cat([group.reshape(group.shape[0], -1) for group in groups])
    expected = sum(torch.nn.functional.cosine_similarity(rows[i], rows[j], dim=0) ** 2
                   for i in range(len(rows)) for j in range(len(rows)) if i != j)
    assert orthogonality_loss(groups, scope="cross_group").item() == pytest.approx(expected.item(), rel=1e-5)


def test_unknown_scope_is_a_clear_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="valid scopes: \\['within_group', 'cross_group'\\]"):
        MMQConfig(orthogonality_scope="global")
    with pytest.raises(ValueError, match="within_group.*cross_group"):
        orthogonality_loss(orthogonal_groups((2,)), scope="everything")


def test_cross_group_refuses_groups_of_different_widths():
    with pytest.raises(ValueError, match="one flattened width"):
        orthogonality_loss([torch.ones(2, 3, 3), torch.ones(2, 4, 4)], scope="cross_group")


class InputWidthExperts(MLPExperts):
    """Test expert type whose regularised weight is the first (input_dim x d) layer: widths differ by modality."""

    @property
    def final_weights(self) -> torch.Tensor:
        return self.weights[0]


def test_model_construction_refuses_cross_group_when_widths_differ(monkeypatch):
    monkeypatch.setitem(EXPERT_TYPES, "test_input_width", InputWidthExperts)  # removed again after the test
    config = MMQConfig(expert_type="test_input_width", orthogonality_scope="cross_group", code_dim=4,
                       codebook_size=3, decoder_hidden_dims=())
    with pytest.raises(ValueError, match="cross_group.*one flattened width"):
        MMQModel(config=config, input_dims={"text": 5, "image": 7})
    MMQModel(config=dataclasses.replace(config, orthogonality_scope="within_group"),
             input_dims={"text": 5, "image": 7})  # the paper's scope does not need one width


def test_default_scope_gives_the_same_loss_as_before_and_cross_group_adds_cross_pairs():
    torch.manual_seed(0)
    config = MMQConfig(code_dim=4, codebook_size=3, decoder_hidden_dims=(), gate_hidden_dim=4)
    assert config.orthogonality_scope == "within_group"
    model = MMQModel(config=config, input_dims={"text": 5, "image": 7})
    inputs = {"text": torch.randn(6, 5), "image": torch.randn(6, 7)}
    groups = model.expert_groups()
    before = sum(((torch.nn.functional.normalize(group.reshape(group.shape[0], -1), dim=1)
                   @ torch.nn.functional.normalize(group.reshape(group.shape[0], -1), dim=1).T
                   - torch.eye(group.shape[0])) ** 2).sum() for group in groups)  # the pre-option formula
    default_loss = model(inputs).losses["orthogonality"]
    assert torch.equal(default_loss, orthogonality_loss(groups))
    assert default_loss.item() == pytest.approx(before.item(), rel=1e-6)
    cross_model = MMQModel(config=dataclasses.replace(config, orthogonality_scope="cross_group"),
                           input_dims={"text": 5, "image": 7})
    cross_model.load_state_dict(model.state_dict())
    cross_loss = cross_model(inputs).losses["orthogonality"]
    assert cross_loss.item() > default_loss.item()  # random weights: the cross pairs add a positive term


def test_orthogonality_study_measures_both_forms_and_position_redundancy_of_a_run(mmq_world):
    import scripts.table_orthogonality as script
    from mmq import registry

    dataset, data = mmq_world.synthetic_dataset(num_users=20, num_items=60, per_user=10)
    config = str(mmq_world.install(dataset, data))
    values, digest = script.run_values(config, 0)
    table = registry.semantic_id_table(config, 0)
    assert digest == table.sha256
    nmi = position_mutual_information(table.table[:, :-1])
    assert values["nmi_mean"] == pytest.approx(nmi[~np.eye(len(nmi), dtype=bool)].mean())
    assert values["ortho_within_group_e4"] >= 0 and values["ortho_cross_group_e4"] >= values["ortho_within_group_e4"]
    assert values["collision_rate"] == table.report["metrics"]["dedup"]["collision_rate_before"]

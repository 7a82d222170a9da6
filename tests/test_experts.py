"""Expert types (one class + one registration + one config value) and any number of named modalities."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from einops import einsum
from torch import Tensor, nn

from mmq.config import from_dict
from mmq.features import modalities as item_modalities
from mmq.features.modalities import ItemModalitiesConfig, load_item_modalities
from mmq.mmq_tokenizer import MMQConfig, MMQModel, MMQTokenizer
from mmq.mmq_tokenizer.experiment import MMQTokenizerConfig
from mmq.mmq_tokenizer.experts import EXPERT_TYPES, ExpertGroup, MLPExperts, register_expert_type
from mmq.mmq_tokenizer.losses import orthogonality_loss

torch.set_num_threads(1)
DIMS = {"text": 11, "image": 6, "collaborative": 9}  # odd, unequal widths
TINY = MMQConfig(codebook_size=5, code_dim=7, gate_hidden_dim=5, decoder_hidden_dims=(9,), num_steps=12,
                 batch_size=16, restart_every=5, kmeans_iterations=3, progress=False)


class LinearExperts(ExpertGroup):
    """Toy expert type: each expert is one linear map ``input_dim -> d`` (no hidden layers)."""

    def __init__(self, *, num_experts: int, input_dim: int, code_dim: int, hidden_dims=()) -> None:
        super().__init__(num_experts=num_experts, input_dim=input_dim, code_dim=code_dim, hidden_dims=hidden_dims)
        self.weight = nn.Parameter(torch.randn(num_experts, input_dim, code_dim) / input_dim**0.5)

    @property
    def final_weights(self) -> Tensor:
        """W_i of L_ortho ``[experts, input_dim, d]``."""
        return self.weight

    def forward(self, inputs: Tensor) -> Tensor:
        """``[batch, input_dim] -> [batch, experts, d]``."""
        return einsum(inputs, self.weight, "b i, e i o -> b e o")  # [batch, experts, d]


@pytest.fixture
def linear_type():
    register_expert_type("linear", LinearExperts)  # the one call a new expert type needs
    yield "linear"
    EXPERT_TYPES.pop("linear")


def synthetic(names, num_items: int = 45, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(num_items, DIMS[name])).astype(np.float32) for name in names}


def test_registered_expert_type_fits_and_encodes_end_to_end_with_l_ortho_on_its_weights(linear_type):
    config = dataclasses.replace(TINY, expert_type=linear_type)
    data = synthetic(config.modalities)
    tokenizer = MMQTokenizer(config).fit(data, seed=0)
    model = tokenizer.model
    assert isinstance(model.shared, LinearExperts) and all(isinstance(group, LinearExperts)
                                                           for group in model.specific.values())
    codes = tokenizer.encode(data)
    assert codes.shape == (45, 6) and codes.max() < 5
    np.testing.assert_array_equal(MMQTokenizer(config).fit(data, seed=0).encode(data), codes)
    assert tokenizer.training_log[-1]["orthogonality"] > 0
    # L_ortho reads exactly the toy experts' weights, and its gradient reaches them
    groups = model.expert_groups()
    assert [group is module.weight for group, module in zip(groups, [model.shared, *model.specific.values()])] == \
        [True, True, True]
    inputs = {name: torch.nn.functional.normalize(torch.from_numpy(array), dim=1) for name, array in data.items()}
    losses = model.train()(inputs).losses
    torch.testing.assert_close(losses["orthogonality"], orthogonality_loss([group.detach() for group in groups]))
    losses["orthogonality"].backward()
    assert model.shared.weight.grad.abs().sum() > 0


def test_expert_type_round_trips_through_save_and_yaml(linear_type, tmp_path):
    config = from_dict(MMQConfig, {"expert_type": linear_type, "num_steps": 6, "codebook_size": 5, "code_dim": 7,
                                   "batch_size": 16, "progress": False})
    data = synthetic(config.modalities)
    tokenizer = MMQTokenizer(config).fit(data, seed=0)
    tokenizer.save(tmp_path / "linear")
    loaded = MMQTokenizer.load(tmp_path / "linear")
    assert loaded.config.expert_type == "linear" and isinstance(loaded.model.shared, LinearExperts)
    np.testing.assert_array_equal(loaded.encode(data), tokenizer.encode(data))


def test_default_expert_type_is_the_mlp_and_unknown_types_list_the_valid_ones():
    assert TINY.expert_type == "mlp" and EXPERT_TYPES["mlp"] is MLPExperts
    assert isinstance(MMQModel(config=TINY, input_dims=DIMS).shared, MLPExperts)
    with pytest.raises(ValueError, match=r"unknown expert_type 'transformer'; valid expert types: \['mlp'\]"):
        dataclasses.replace(TINY, expert_type="transformer")


def test_register_expert_type_rejects_non_experts_and_taken_names(linear_type):
    register_expert_type(linear_type, LinearExperts)  # same class again: a no-op
    with pytest.raises(ValueError, match="already registered as LinearExperts"):
        register_expert_type(linear_type, MLPExperts)
    with pytest.raises(TypeError, match="subclass of ExpertGroup"):
        register_expert_type("plain", nn.Linear)
    with pytest.raises(TypeError, match="abstract"):
        type("Incomplete", (ExpertGroup,), {})(num_experts=2, input_dim=3, code_dim=4)


def test_an_expert_type_with_the_wrong_output_shape_fails_clearly():
    class Flat(LinearExperts):
        def forward(self, inputs: Tensor) -> Tensor:
            return super().forward(inputs).sum(1)  # [batch, d]: forgot the experts axis

    register_expert_type("flat", Flat)
    try:
        model = MMQModel(config=dataclasses.replace(TINY, expert_type="flat"), input_dims=DIMS)
        with pytest.raises(ValueError, match=r"expert_type 'flat' \(Flat\) returned shape \(4, 7\)"):
            model.encode_codes({name: torch.zeros(4, dim) for name, dim in DIMS.items()})
    finally:
        EXPERT_TYPES.pop("flat")


@pytest.mark.parametrize("names, counts", [(("text",), (3,)),
                                           (("collaborative", "text", "image"), (2, 1, 3)),
                                           (("text", "image", "collaborative"), (2, 0, 1))])
def test_mmq_fits_and_encodes_any_number_of_modalities(names, counts):
    config = dataclasses.replace(TINY, modalities=names, num_specific_experts=counts)
    data = synthetic(names)
    tokenizer = MMQTokenizer(config).fit(data, seed=0)
    codes = tokenizer.encode(data)
    assert codes.shape == (45, config.num_experts) == (45, 2 + sum(counts))
    assert len(tokenizer.expert_names) == config.num_experts
    gated = [name for name, count in zip(names, counts) if count]
    assert list(tokenizer.model.gates) == gated and list(tokenizer.model.auxiliary_decoders) == gated
    gates = tokenizer.gates(data)  # [n, experts]: 1 for shared, one softmax per gated modality
    np.testing.assert_allclose(gates.sum(1), 2 + len(gated), rtol=1e-5)
    decoded = tokenizer.decode(codes)
    assert {name: array.shape for name, array in decoded.items()} == {name: (45, DIMS[name]) for name in names}
    assert set(tokenizer.gated_reconstruction_error(data)) == {"reconstruction_gated", "auxiliary_gated"}


def test_item_modalities_config_accepts_any_order_and_rejects_bad_names():
    assert ItemModalitiesConfig().modalities == ("text", "image")
    assert ItemModalitiesConfig(modalities=("collaborative",)).modalities == ("collaborative",)
    assert from_dict(ItemModalitiesConfig, {"modalities": ["image", "text", "collaborative"]}).modalities == (
        "image", "text", "collaborative")
    with pytest.raises(ValueError, match=r"\['text'\] more than once"):
        ItemModalitiesConfig(modalities=("text", "image", "text"))
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\].*valid modalities: \('text', 'image', "
                                         r"'collaborative'\)"):
        ItemModalitiesConfig(modalities=("text", "audio"))
    with pytest.raises(ValueError, match="at least one"):
        ItemModalitiesConfig(modalities=())
    with pytest.raises(ValueError, match="list of names"):
        ItemModalitiesConfig(modalities="text")
    three = ("image", "collaborative", "text")
    run = MMQTokenizerConfig(inputs=ItemModalitiesConfig(modalities=three),
                             mmq=MMQConfig(modalities=three, num_specific_experts=(1, 1, 1)))
    assert run.inputs.modalities == run.mmq.modalities
    with pytest.raises(ValueError, match="must equal the inputs' modalities"):
        MMQTokenizerConfig(inputs=ItemModalitiesConfig(modalities=three))


def test_load_item_modalities_returns_one_entry_per_modality_in_order(monkeypatch):
    import mmq.data

    dataset = SimpleNamespace(name="synthetic", num_items=5)
    valid = {"image": np.array([True, False, True, True, False]), "collaborative": np.ones(5, bool)}
    monkeypatch.setattr(mmq.data, "load_dataset", lambda name, kcore=None: dataset)
    monkeypatch.setattr(item_modalities, "item_text_embeddings", lambda data, config: np.ones((5, 3), np.float32))
    monkeypatch.setattr(item_modalities, "_features", lambda data, name, config: SimpleNamespace(
        embeddings=np.zeros((5, DIMS[name]), np.float32), valid=valid[name]))
    embeddings, report = load_item_modalities(ItemModalitiesConfig(modalities=("collaborative", "text", "image")))
    assert list(embeddings) == ["collaborative", "text", "image"]
    assert report["dims"] == {"collaborative": 9, "text": 3, "image": 6}
    assert report["num_items_without_image"] == 2 and report["num_items_without_collaborative"] == 0
    assert "num_items_without_text" not in report
    embeddings, report = load_item_modalities(ItemModalitiesConfig(modalities=("image",)))
    assert list(embeddings) == ["image"] and report["num_items_without_image"] == 2


def test_shuffled_modality_permutes_rows_across_items_and_names_bad_input(monkeypatch):
    import mmq.data

    dataset = SimpleNamespace(name="synthetic", num_items=50)
    image = np.arange(50 * 6, dtype=np.float32).reshape(50, 6)
    monkeypatch.setattr(mmq.data, "load_dataset", lambda name, kcore=None: dataset)
    monkeypatch.setattr(item_modalities, "item_text_embeddings", lambda data, config: np.eye(50, 3, dtype=np.float32))
    monkeypatch.setattr(item_modalities, "_features", lambda data, name, config: SimpleNamespace(
        embeddings=image.copy(), valid=np.ones(50, bool)))
    plain, _ = load_item_modalities(ItemModalitiesConfig())
    shuffled, report = load_item_modalities(ItemModalitiesConfig(shuffled=("image",), shuffle_seed=3))
    again, _ = load_item_modalities(ItemModalitiesConfig(shuffled=("image",), shuffle_seed=3))
    other, _ = load_item_modalities(ItemModalitiesConfig(shuffled=["image"], shuffle_seed=4))
    np.testing.assert_array_equal(shuffled["text"], plain["text"])          # only the named modality moves
    np.testing.assert_array_equal(np.sort(shuffled["image"], axis=0), np.sort(plain["image"], axis=0))  # same rows
    assert (shuffled["image"] != plain["image"]).any(1).mean() > 0.8        # ... at other items
    np.testing.assert_array_equal(shuffled["image"], again["image"])        # seeded
    assert (other["image"] != shuffled["image"]).any()
    assert report["shuffled"]["modalities"] == ["image"] and report["shuffled"]["seed"] == 3
    with pytest.raises(ValueError, match=r"shuffled names \['collaborative'\]"):
        ItemModalitiesConfig(shuffled=("collaborative",))
    with pytest.raises(ValueError, match="list of modality names"):
        ItemModalitiesConfig(shuffled="image")

"""MMQ stage-1 tokenizer behind the shared :class:`~mmq.semantic_ids.base.Tokenizer` protocol.

Takes the same dict inputs as the MA/MS wrappers (``{"text": [n, d_t], "image": [n, d_v]}``),
so it drops into every tokenizer-quality table beside them. SID = the codes of all experts in
the order ``shared_0.., <modality 0>_0.., <modality 1>_0..`` (:meth:`MMQConfig.expert_names`).

``decode(codes)`` reconstructs from the SID alone: Dec(sum_i w_i q_i) with w = 1 for shared
experts and the *training-mean* gate of each specific expert (per-item gates need the inputs,
which a SID does not carry). ``gated_reconstruction_error`` gives the paper's L_recon with the
item's own gates for comparison.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from mmq.config import from_dict, to_dict
from mmq.finetune.sources import MMQCodes
from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.model import MMQModel
from mmq.mmq_tokenizer.train import INFERENCE_CHUNK, train_stage1
from mmq.semantic_ids.base import (load_torch_state, read_tokenizer_json, require_fitted, save_torch_state,
                                 validate_codes, write_tokenizer_json)
from mmq.semantic_ids.modalities import ModalityInputs


class MMQTokenizer(ModalityInputs):
    """Shared-specific mixture-of-quantization tokenizer (stage 1 of MMQ)."""

    kind = "mmq"

    def __init__(self, config: MMQConfig | None = None, **overrides) -> None:
        config = dataclasses.replace(config or MMQConfig(), **overrides)
        super().__init__(modalities=config.modalities, normalise=config.normalise_inputs)
        self.config = config
        self.model: MMQModel | None = None
        self.training_log: list[dict] = []
        self.fit_seconds: float | None = None

    @property
    def code_length(self) -> int:
        return self.config.num_experts

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.config.codebook_size,) * self.config.num_experts

    @property
    def expert_names(self) -> tuple[str, ...]:
        """Name of each SID position."""
        return self.config.expert_names()

    def _tensors(self, embeddings: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(array) for name, array in self.prepare(embeddings).items()}

    def fit(self, embeddings: Mapping[str, np.ndarray], *, seed: int = 0,
            checkpoint_directory: Path | None = None) -> "MMQTokenizer":
        """Train experts, gates, codebooks and decoders; same seed and data give the same SIDs.

        ``checkpoint_directory``: where stage 1 writes ``state.pt`` after every window; a fit killed
        and restarted on the same folder resumes to the same SIDs (None: in memory).
        """
        self.dims = None
        data = self._tensors(embeddings)
        num_items = next(iter(data.values())).shape[0]
        if num_items < self.config.codebook_size:
            raise ValueError(f"need >= codebook_size={self.config.codebook_size} items, got {num_items}")
        torch.set_num_threads(self.config.num_threads)
        torch.manual_seed(seed)
        started = time.perf_counter()
        model = MMQModel(config=self.config, input_dims={name: tensor.shape[1] for name, tensor in data.items()})
        self.training_log = train_stage1(model, data, self.config, seed, directory=checkpoint_directory)
        self.fit_seconds = time.perf_counter() - started
        self.model = model
        self.dims = dict(model.input_dims)
        return self

    def _chunks(self, data: Mapping[str, torch.Tensor], function) -> list:
        num_items = next(iter(data.values())).shape[0]
        with torch.inference_mode():
            return [function({name: tensor[start: start + INFERENCE_CHUNK] for name, tensor in data.items()})
                    for start in range(0, num_items, INFERENCE_CHUNK)]

    def encode(self, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Semantic IDs ``[n, num_experts]`` int64, SID order."""
        require_fitted(self.model is not None, self)
        torch.set_num_threads(self.config.num_threads)
        return torch.cat(self._chunks(self._tensors(embeddings), self.model.encode_codes)).numpy().astype(np.int64)

    def expert_logits(self, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per-expert code logits cos(z_i, q_j) ``[n, experts, K]`` (stage-2 soft-index input)."""
        require_fitted(self.model is not None, self)
        return torch.cat(self._chunks(self._tensors(embeddings), self.model.expert_logits)).numpy()

    def gates(self, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Mixing weights ``[n, experts]`` (1 for shared experts, softmax gates for specific ones)."""
        require_fitted(self.model is not None, self)
        return torch.cat(self._chunks(self._tensors(embeddings),
                                      lambda batch: self.model.expert_latents(batch).weights)).numpy()

    def decode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """SID-only reconstruction of the normalised inputs ``{modality: [n, d_m]}`` (mean gates)."""
        require_fitted(self.model is not None, self)
        codes = torch.from_numpy(validate_codes(codes, self.codebook_sizes))
        with torch.inference_mode():
            output = torch.cat([self.model.decode_codes(codes[start: start + INFERENCE_CHUNK])
                                for start in range(0, codes.shape[0], INFERENCE_CHUNK)]).numpy()
        boundaries = np.cumsum([self.dims[name] for name in self.modalities])[:-1]
        return dict(zip(self.modalities, np.split(output.astype(np.float32), boundaries, axis=1)))

    def gated_reconstruction_error(self, embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Mean ||x - Dec(z_q)||^2 with each item's own gates (the paper's L_recon) and L_aux."""
        require_fitted(self.model is not None, self)
        outputs = self._chunks(self._tensors(embeddings), lambda batch: {
            name: float(value) * next(iter(batch.values())).shape[0]
            for name, value in self.model(batch).losses.items() if name in ("reconstruction", "auxiliary")})
        num_items = next(iter(self.prepare(embeddings).values())).shape[0]
        return {f"{name}_gated": sum(output[name] for output in outputs) / num_items for name in outputs[0]}

    def stage2_source(self, embeddings: Mapping[str, np.ndarray], tau: float) -> MMQCodes:
        """The trainable stage-2 source over ``embeddings`` (MMQ stage 2: soft indices from cosine logits)."""
        return MMQCodes(self.model, self.prepare(embeddings), tau)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``model.pt`` and ``tokenizer.json`` (config, input dims, training log)."""
        require_fitted(self.model is not None, self)
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_torch_state(Path(directory) / "model.pt", self.model.state_dict())
        write_tokenizer_json(directory, self.kind, {"config": to_dict(self.config), "dims": self.dims,
                                                    "expert_names": list(self.expert_names),
                                                    "fit_seconds": self.fit_seconds, "training_log": self.training_log})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "MMQTokenizer":
        """Rebuild a trained tokenizer from :meth:`save` output."""
        payload = read_tokenizer_json(directory, cls.kind)
        tokenizer = cls(from_dict(MMQConfig, payload["config"]))
        tokenizer.dims = {name: int(dim) for name, dim in payload["dims"].items()}
        tokenizer.training_log, tokenizer.fit_seconds = payload.get("training_log", []), payload.get("fit_seconds")
        model = MMQModel(config=tokenizer.config, input_dims=tokenizer.dims)
        model.load_state_dict(load_torch_state(Path(directory) / "model.pt"))
        tokenizer.model = model.eval()
        return tokenizer

"""RQ-VAE tokenizer: trains :class:`~baselines.sid_tokenizers.rq_vae_model.RQVAE` and exposes the protocol.

Training: Adam on shuffled mini-batches with a cosine learning-rate decay; k-means
initialisation of every level's codebook (faiss, on the residuals of an initial sample of
latents); dead-code restarts at the end of every epoch (codes no item chose during the epoch are
re-seeded from random residuals of that level in the last batch). The epochs are the units of
:func:`mmq.training.run_training`: given a ``checkpoint_directory``, ``state.pt`` (model, optimiser,
batch-order generator, every RNG state) is written after every epoch, and a killed fit restarted on
the same folder resumes to the same semantic IDs as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from baselines.sid_tokenizers.common import UniformCodebookTokenizer
from mmq.semantic_ids.base import (
    load_torch_state,
    read_tokenizer_json,
    require_fitted,
    save_torch_state,
    validate_codes,
    validate_embeddings,
    write_tokenizer_json,
)
from mmq.training import LoopSettings, TrainingTask, has_saved_state, run_training
from baselines.sid_tokenizers.rq_vae_model import RQVAE

logger = logging.getLogger(__name__)

INFERENCE_CHUNK = 65_536  # rows per encode/decode chunk


class RQVAETokenizer(UniformCodebookTokenizer):
    """Residual-quantized VAE semantic IDs (TIGER-style), trained on CPU in minutes."""

    kind = "rq_vae"

    def __init__(
        self,
        *,
        num_levels: int = 3,  # code length L
        codebook_size: int = 256,  # K codes per level
        latent_dim: int = 32,  # quantized latent width
        hidden_dims: tuple[int, ...] = (512, 256, 128),  # encoder MLP; decoder mirrors it
        commitment_weight: float = 0.25,  # beta
        codebook_weight: float = 1.0,  # weight of ||sg(r) - e||^2 (unused with EMA)
        codebook_update: str = "loss",  # "loss" (codebook loss) or "ema"
        ema_decay: float = 0.99,
        learning_rate: float = 1e-3,
        min_learning_rate_ratio: float = 0.1,  # cosine decay floor as a fraction of the peak
        weight_decay: float = 0.0,
        batch_size: int = 1024,
        num_steps: int = 3000,
        kmeans_init: bool = True,  # faiss k-means init of each level from initial residuals
        kmeans_init_samples: int = 16_384,  # latents used for the k-means initialisation
        kmeans_iterations: int = 25,
        dead_code_restarts: bool = True,
        restart_until: float = 0.9,  # no restarts in the last (1 - this) of training
        num_threads: int | None = None,  # torch.set_num_threads during fit/encode if given
        progress: bool = True,  # tqdm bar during fit
    ) -> None:
        if codebook_update not in ("loss", "ema"):
            raise ValueError(f"codebook_update must be 'loss' or 'ema', got {codebook_update!r}")
        if num_levels < 1 or codebook_size < 2:
            raise ValueError("num_levels must be >= 1 and codebook_size >= 2")
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden_dims = tuple(int(width) for width in hidden_dims)
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.codebook_update = codebook_update
        self.ema_decay = ema_decay
        self.learning_rate = learning_rate
        self.min_learning_rate_ratio = min_learning_rate_ratio
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.kmeans_init = kmeans_init
        self.kmeans_init_samples = kmeans_init_samples
        self.kmeans_iterations = kmeans_iterations
        self.dead_code_restarts = dead_code_restarts
        self.restart_until = restart_until
        self.num_threads = num_threads
        self.progress = progress
        self.dim: int | None = None
        self.model: RQVAE | None = None
        self.training_log: list[dict] = []  # per-epoch mean losses and restart counts

    def _build_model(self, dim: int) -> RQVAE:
        return RQVAE(
            input_dim=dim,
            hidden_dims=self.hidden_dims,
            latent_dim=self.latent_dim,
            num_levels=self.num_levels,
            codebook_size=self.codebook_size,
            commitment_weight=self.commitment_weight,
            codebook_weight=self.codebook_weight,
            use_ema=self.codebook_update == "ema",
            ema_decay=self.ema_decay,
        )

    def fit(self, embeddings: np.ndarray, *, seed: int = 0,
            checkpoint_directory: Path | None = None) -> "RQVAETokenizer":
        """Train encoder, codebooks and decoder; same seed and data give the same SIDs.

        ``checkpoint_directory``: where ``state.pt`` goes after every epoch; a fit killed and restarted
        on the same folder resumes to the same SIDs (None: in memory).
        """
        data = torch.from_numpy(validate_embeddings(embeddings))
        num_items, self.dim = data.shape
        if num_items < self.codebook_size:
            raise ValueError(f"need >= codebook_size={self.codebook_size} items, got {num_items}")
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = self._build_model(self.dim)
        if self.kmeans_init and not has_saved_state(checkpoint_directory):  # a resumed fit loads its codebooks
            sample = data[torch.randperm(num_items, generator=generator)[: self.kmeans_init_samples]]
            self._kmeans_initialise(model, sample, seed)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        task = RQVAETrainingTask(self, model, optimizer, data, generator)
        settings = LoopSettings(
            max_units=math.ceil(self.num_steps / task.steps_per_epoch), unit="epoch", description="rq_vae"
        )
        history = run_training(task, settings, checkpoint_directory, seed=seed, progress=self.progress).history
        self.training_log = history[: self.num_steps // task.steps_per_epoch]  # complete epochs only
        model.eval()
        self.model = model
        if self.training_log:
            logger.info("rq_vae trained: %s", self.training_log[-1])
        return self

    def _learning_rate(self, step: int) -> float:
        progress = step / max(1, self.num_steps - 1)
        floor = self.min_learning_rate_ratio
        return self.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    @torch.no_grad()
    def _kmeans_initialise(self, model: RQVAE, sample: torch.Tensor, seed: int) -> None:
        """Level by level: faiss k-means on the residuals of the (untrained) encoder's latents."""
        residual = model.encoder(sample).numpy().astype(np.float32)  # [s, latent]
        for level in range(self.num_levels):
            kmeans = faiss.Kmeans(
                residual.shape[1],
                self.codebook_size,
                niter=self.kmeans_iterations,
                seed=seed * 1_000 + level,
                max_points_per_centroid=256,
                verbose=False,
            )
            kmeans.train(residual)
            centroids = torch.from_numpy(kmeans.centroids.astype(np.float32))
            model.quantizer.set_codes_(level, torch.arange(self.codebook_size), centroids)
            codes = model.quantizer.quantize_level(torch.from_numpy(residual), level).numpy()
            residual = residual - kmeans.centroids[codes]

    @torch.no_grad()
    def _restart_dead_codes(
        self, model: RQVAE, batch: torch.Tensor, usage: torch.Tensor, generator: torch.Generator
    ) -> int:
        """Re-seed codes unused during the epoch from random residuals of the last batch."""
        model.eval()  # no EMA update while only reading residuals
        residuals = model.quantizer(model.encoder(batch)).residuals  # [batch, levels, latent]
        model.train()
        restarted = 0
        for level in range(self.num_levels):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if dead.numel() == 0:
                continue
            rows = torch.randint(0, residuals.shape[0], (dead.numel(),), generator=generator)
            model.quantizer.set_codes_(level, dead, residuals[rows, level])
            restarted += int(dead.numel())
        return restarted

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Semantic IDs, int64 ``[n, num_levels]``."""
        require_fitted(self.model is not None, self)
        data = torch.from_numpy(validate_embeddings(embeddings, expected_dim=self.dim))
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        with torch.inference_mode():
            chunks = [
                self.model.encode_codes(data[start : start + INFERENCE_CHUNK])
                for start in range(0, data.shape[0], INFERENCE_CHUNK)
            ]
        return torch.cat(chunks).numpy().astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Decoder output for ``codes``, float32 ``[n, d]``."""
        require_fitted(self.model is not None, self)
        codes = torch.from_numpy(validate_codes(codes, self.codebook_sizes))
        with torch.inference_mode():
            chunks = [
                self.model.decode_codes(codes[start : start + INFERENCE_CHUNK])
                for start in range(0, codes.shape[0], INFERENCE_CHUNK)
            ]
        return torch.cat(chunks).numpy().astype(np.float32)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``model.pt`` (state dict) and ``tokenizer.json`` under ``directory``."""
        require_fitted(self.model is not None, self)
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_torch_state(Path(directory) / "model.pt", self.model.state_dict())
        write_tokenizer_json(
            directory,
            self.kind,
            {"hyper": self.hyper_parameters(), "dim": self.dim, "training_log": self.training_log},
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "RQVAETokenizer":
        """Rebuild a trained tokenizer from :meth:`save` output."""
        payload = read_tokenizer_json(directory, cls.kind)
        tokenizer = cls(**payload["hyper"])
        tokenizer.dim = int(payload["dim"])
        tokenizer.training_log = payload.get("training_log", [])
        model = tokenizer._build_model(tokenizer.dim)
        model.load_state_dict(load_torch_state(Path(directory) / "model.pt"))
        tokenizer.model = model.eval()
        return tokenizer


class RQVAETrainingTask(TrainingTask):
    """RQ-VAE training in data epochs (the loop's units): each ends with a log entry and dead-code restarts.

    The last unit may be a ragged epoch (``num_steps`` not a multiple of the epoch): its steps train,
    but it restarts nothing and its record is not part of the tokenizer's ``training_log``.
    """

    def __init__(self, tokenizer: RQVAETokenizer, model: RQVAE, optimizer: torch.optim.Optimizer,
                 data: torch.Tensor, generator: torch.Generator) -> None:
        self.tokenizer, self.model, self.optimizer, self.data = tokenizer, model, optimizer, data
        self.generator = generator  # kmeans sample, batch order and restart rows, carried across epochs
        self.num_items = data.shape[0]
        self.batch_size = min(tokenizer.batch_size, self.num_items)
        self.steps_per_epoch = max(1, self.num_items // self.batch_size)  # drop the ragged last batch
        self.restart_stop = int(tokenizer.restart_until * tokenizer.num_steps)

    def train_unit(self, index: int) -> dict[str, Any]:
        """Steps ``[index * steps_per_epoch, ...)`` on one permutation; mean losses and codes restarted."""
        tokenizer, model, optimizer = self.tokenizer, self.model, self.optimizer
        first = index * self.steps_per_epoch
        last = min(first + self.steps_per_epoch, tokenizer.num_steps)
        usage = torch.zeros(tokenizer.num_levels, tokenizer.codebook_size, dtype=torch.int64)
        epoch_losses: dict[str, float] = {}
        model.train()
        permutation = torch.randperm(self.num_items, generator=self.generator)
        for step in range(first, last):
            position = step - first
            batch = self.data[permutation[position * self.batch_size : (position + 1) * self.batch_size]]
            for group in optimizer.param_groups:
                group["lr"] = tokenizer._learning_rate(step)
            output = model(batch)
            optimizer.zero_grad(set_to_none=True)
            output.losses["total"].backward()
            optimizer.step()
            usage += _code_counts(output.codes, tokenizer.codebook_size)
            for name, value in output.losses.items():
                epoch_losses[name] = epoch_losses.get(name, 0.0) + value.detach().item() / self.steps_per_epoch
        restarted = 0
        if last - first == self.steps_per_epoch and tokenizer.dead_code_restarts and last - 1 < self.restart_stop:
            restarted = tokenizer._restart_dead_codes(model, batch, usage, self.generator)
        return {"step": last, **epoch_losses, "restarted": restarted}

    def unit_record(self, number: int, fields: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The epoch's entry as it is (its ``step`` already says where it ends)."""
        return fields

    def checkpointed(self) -> dict[str, Any]:
        """Model (EMA codebook buffers included) and optimiser."""
        return {"model": self.model, "optimizer": self.optimizer}

    def state_dict(self) -> dict[str, Any]:
        """The checkpointed parts and the batch-order generator."""
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


def _code_counts(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each code of each level occurs, int64 ``[levels, K]``."""
    levels = codes.shape[1]
    offsets = torch.arange(levels) * codebook_size
    flat = (codes + offsets[None, :]).flatten()
    return torch.bincount(flat, minlength=levels * codebook_size).view(levels, codebook_size)

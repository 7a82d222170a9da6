"""Stage-1 training loop: faiss k-means codebook init, Adam with cosine decay, dead-code restarts.

Runs under ``accelerate`` (CPU, one GPU or several) on in-memory modality tensors; shuffled
mini-batches from a seeded generator make the same seed give the same semantic IDs. The loop is
:func:`mmq.training.run_training` with windows of ``restart_every`` steps as its units (each ends
with a log entry and dead-code restarts); there is no validation, so no selection or early
stopping. Given a ``directory``, ``state.pt`` (model, optimiser, generator, RNG states) is written
after every window and an interrupted run resumes to the same semantic IDs.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

import faiss
import numpy as np
import torch
from accelerate import Accelerator

from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.model import MMQModel
from mmq.training import LoopSettings, TrainingTask, has_saved_state, run_training

LOGGER = logging.getLogger(__name__)
INFERENCE_CHUNK = 65_536  # rows per no-grad forward


def learning_rate(config: MMQConfig, step: int) -> float:
    """Cosine decay from ``learning_rate`` to ``min_learning_rate_ratio * learning_rate``."""
    progress = step / max(1, config.num_steps - 1)
    floor = config.min_learning_rate_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_of(data: Mapping[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``rows`` of every modality."""
    return {name: tensor[rows] for name, tensor in data.items()}


@torch.no_grad()
def prepared_latents(model: MMQModel, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Lookup-ready latents of every expert ``[n, experts, d]``, chunked."""
    num_items = next(iter(data.values())).shape[0]
    chunks = []
    for start in range(0, num_items, INFERENCE_CHUNK):
        rows = torch.arange(start, min(start + INFERENCE_CHUNK, num_items), device=model.quantizer.codebooks.device)
        chunks.append(model.quantizer.prepare(model.expert_latents(batch_of(data, rows)).latents))
    return torch.cat(chunks)


@torch.no_grad()
def kmeans_initialise(model: MMQModel, sample: Mapping[str, torch.Tensor], config: MMQConfig, seed: int) -> None:
    """Each expert's codebook <- faiss k-means (spherical for cosine) of its initial latents."""
    latents = prepared_latents(model, sample).cpu().numpy().astype(np.float32)  # [s, experts, d]
    codes = torch.arange(config.codebook_size)
    for expert in range(config.num_experts):
        kmeans = faiss.Kmeans(latents.shape[2], config.codebook_size, niter=config.kmeans_iterations,
                              seed=seed * 1_000 + expert, spherical=config.lookup == "cosine",
                              max_points_per_centroid=256, verbose=False)
        kmeans.train(np.ascontiguousarray(latents[:, expert]))
        centroids = torch.from_numpy(kmeans.centroids.astype(np.float32)).to(model.quantizer.codebooks.device)
        model.quantizer.set_codes_(expert, codes, centroids)


@torch.no_grad()
def restart_dead_codes(model: MMQModel, batch: Mapping[str, torch.Tensor], usage: torch.Tensor,
                       generator: torch.Generator) -> int:
    """Re-seed codes no item chose since the last check from random latents of ``batch``."""
    latents = model.quantizer.prepare(model.expert_latents(batch).latents)  # [b, experts, d]
    restarted = 0
    for expert in range(usage.shape[0]):
        dead = torch.nonzero(usage[expert] == 0).flatten()
        if dead.numel():
            rows = torch.randint(0, latents.shape[0], (dead.numel(),), generator=generator)
            model.quantizer.set_codes_(expert, dead.to(latents.device), latents[rows.to(latents.device), expert])
            restarted += int(dead.numel())
    return restarted


@torch.no_grad()
def mean_weights(model: MMQModel, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Average mixing weight of every expert over all items ``[experts]``."""
    num_items = next(iter(data.values())).shape[0]
    total = None
    for start in range(0, num_items, INFERENCE_CHUNK):
        rows = torch.arange(start, min(start + INFERENCE_CHUNK, num_items), device=model.mean_weights.device)
        weights = model.expert_latents(batch_of(data, rows)).weights
        total = weights.sum(0) if total is None else total + weights.sum(0)
    return total / num_items


class Stage1Task(TrainingTask):
    """MMQ stage 1 in windows of ``restart_every`` steps: each window ends with a log entry and restarts."""

    def __init__(self, model, optimizer, accelerator: Accelerator, data: Mapping[str, torch.Tensor],
                 config: MMQConfig, generator: torch.Generator) -> None:
        self.model, self.optimizer, self.accelerator = model, optimizer, accelerator
        self.data, self.config = data, config
        self.generator = generator                     # batch order and restart rows, carried across windows
        self.num_items = next(iter(data.values())).shape[0]
        self.batch_size = min(config.batch_size, self.num_items)
        self.steps_per_epoch = max(1, self.num_items // self.batch_size)  # drop the ragged last batch
        self.restart_stop = int(config.restart_until * config.num_steps)
        self.permutation: torch.Tensor | None = None   # this data epoch's order (epochs and windows need not align)
        self.usage = torch.zeros(config.num_experts, config.codebook_size, dtype=torch.int64, device=accelerator.device)

    def train_unit(self, index: int) -> dict[str, Any]:
        """Steps ``[index * restart_every, ...)``; mean losses, fewest codes used, codes restarted."""
        config, accelerator = self.config, self.accelerator
        first = index * config.restart_every
        last = min(first + config.restart_every, config.num_steps)
        sums: dict[str, float] = {}
        self.model.train()
        for step in range(first, last):
            position = step % self.steps_per_epoch
            if position == 0:
                self.permutation = torch.randperm(self.num_items, generator=self.generator).to(accelerator.device)
            batch = batch_of(self.data, self.permutation[position * self.batch_size: (position + 1) * self.batch_size])
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            output = self.model(batch)
            self.optimizer.zero_grad(set_to_none=True)
            accelerator.backward(output.losses["total"])
            self.optimizer.step()
            self.usage += torch.nn.functional.one_hot(output.codes, config.codebook_size).sum(0)
            for name, value in output.losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        entry = {"step": last, **{name: value / (last - first) for name, value in sums.items()},
                 "codes_used_min": int((self.usage > 0).sum(1).min())}
        restarted = 0
        if config.dead_code_restarts and last - 1 < self.restart_stop:
            restarted = restart_dead_codes(accelerator.unwrap_model(self.model), batch, self.usage, self.generator)
        entry["restarted"] = restarted
        self.usage.zero_()
        return entry

    def unit_record(self, number: int, fields: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The window's entry as it is (its ``step`` already says where it ends)."""
        return fields

    def checkpointed(self) -> dict[str, Any]:
        """Model and optimiser."""
        return {"model": self.accelerator.unwrap_model(self.model), "optimizer": self.optimizer}

    def state_dict(self) -> dict[str, Any]:
        """The checkpointed parts, the batch-order generator and the current data epoch's order."""
        return {**super().state_dict(), "generator": self.generator.get_state(),
                "permutation": None if self.permutation is None else self.permutation.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        permutation = state["permutation"]
        self.permutation = None if permutation is None else permutation.to(self.accelerator.device)


def train_stage1(model: MMQModel, data: Mapping[str, torch.Tensor], config: MMQConfig, seed: int,
                 directory: Path | None = None) -> list[dict]:
    """Train ``model`` in place on ``data`` (normalised modality tensors); returns the per-window log.

    ``directory``: where ``state.pt`` goes after every window, making the run resumable (None: in memory).
    """
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    num_items = next(iter(data.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    model.to(accelerator.device)
    data = {name: tensor.to(accelerator.device) for name, tensor in data.items()}
    if config.kmeans_init and not has_saved_state(directory):   # a resumed run loads its trained codebooks
        sample_rows = torch.randperm(num_items, generator=generator)[: 256 * config.codebook_size]
        kmeans_initialise(model, batch_of(data, sample_rows.to(accelerator.device)), config, seed)
    optimizer = torch.optim.Adam([parameter for parameter in model.parameters() if parameter.requires_grad],
                                 lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    task = Stage1Task(model, optimizer, accelerator, data, config, generator)
    settings = LoopSettings(max_units=math.ceil(config.num_steps / config.restart_every), unit="window",
                            description="mmq stage 1")
    log = run_training(task, settings, directory, seed=seed, accelerator=accelerator, progress=config.progress).history
    model = accelerator.unwrap_model(model)
    model.eval()
    model.mean_weights.copy_(mean_weights(model, data))
    model.cpu()
    LOGGER.info("mmq stage 1 trained: %s", log[-1] if log else {})
    return log

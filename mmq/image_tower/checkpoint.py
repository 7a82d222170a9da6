"""Checkpoints that carry their own architecture config, written atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mmq import artifacts
from mmq.config import from_dict, to_dict
from mmq.image_tower.model import ImageTextModel, ImageTowerConfig


def save_checkpoint(path: str | Path, model: ImageTextModel, **extra: Any) -> None:
    """Write ``{"model": state_dict, "tower_config": ..., **extra}`` atomically."""
    payload = {"model": model.state_dict(), "tower_config": to_dict(model.config), **extra}
    with artifacts.atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[ImageTextModel, dict]:
    """Rebuild the model from the recorded config and load its weights (eval mode) + the raw payload."""
    payload = torch.load(path, map_location=map_location, weights_only=False)
    config = from_dict(ImageTowerConfig, payload["tower_config"])
    # the weights are in the file: never download pretrained weights again when reloading
    model = ImageTextModel(config=dataclasses.replace(config, pretrained=""))
    model.load_state_dict(payload["model"])
    model.eval()
    return model, payload


def checkpoint_hash(path: str | Path) -> str:
    """Short content hash of a checkpoint file (feature caches are keyed by it)."""
    return artifacts.sha256_of_file(path)[:12]

"""Item-level train/valid/test split fixed by seed, and cheap batch augmentation on uint8 pixels."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class ItemSplit(NamedTuple):
    """Disjoint item indices; test items are never used for training or model selection."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def split_items(eligible: np.ndarray, *, valid_size: int, test_size: int, seed: int) -> ItemSplit:
    """Shuffle the eligible item indices with ``seed``; the first ``test_size`` are test, then valid."""
    eligible = np.flatnonzero(np.asarray(eligible, dtype=bool))
    if valid_size + test_size >= len(eligible):
        raise ValueError(f"valid_size + test_size = {valid_size + test_size} leaves no training items "
                         f"out of {len(eligible)}")
    order = np.random.default_rng(seed).permutation(eligible)
    test, valid, train = np.split(order, [test_size, test_size + valid_size])
    return ItemSplit(np.sort(train), np.sort(valid), np.sort(test))


def augment(pixels: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random translation (replicate-pad by ``pad`` then crop back) and horizontal flip, per image."""
    batch, _, height, width = pixels.shape
    out = pixels
    if pad > 0:
        padded = F.pad(pixels.float(), (pad, pad, pad, pad), mode="replicate")  # [batch, 3, H + 2p, W + 2p]
        offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
        out = torch.stack([padded[i, :, y:y + height, x:x + width] for i, (y, x) in enumerate(offsets.tolist())])
    if flip:
        flipped = torch.rand(batch, generator=generator) < 0.5
        out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
    return out

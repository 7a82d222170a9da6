"""Image tower + locked-text head in one joint space (LiT-style contrastive model).

The image tower is built by open_clip's own machinery (``open_clip.model._build_vision_tower``
with a ``CLIPVisionCfg``): a ModifiedResNet when ``layers`` is a tuple, a ViT when it is one int,
or a timm backbone by name. The text side is a frozen, precomputed MiniLM embedding followed by an
optional linear projection into the joint space. ``open_clip_model`` + ``pretrained`` instead load
a public open_clip checkpoint's visual tower (needs internet; never the default, never in tests).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from torch import nn


@dataclasses.dataclass(frozen=True)
class ImageTowerConfig:
    """Architecture of the image tower and the text head (defaults: small ResNet for 2 CPU cores)."""

    embed_dim: int = 256                     # joint image-text space
    image_size: int = 64                     # square input side; images are letterboxed to it
    layers: tuple[int, ...] = (1, 1, 1, 1)   # 4 ints: ModifiedResNet stages; 1 int: ViT depth
    width: int = 16                          # ResNet stem width (final channels = 32 * width) / ViT width
    head_width: int = 32                     # ViT attention head width
    patch_size: int = 8                      # ViT patch side
    timm_model_name: str = ""                # e.g. "resnet18": timm backbone through open_clip (overrides layers)
    open_clip_model: str = ""                # e.g. "RN50": a public open_clip architecture ...
    pretrained: str = ""                     # ... with pretrained weights, e.g. "openai" (needs internet)
    text_dim: int = 384                      # frozen text embedding size (MiniLM)
    text_projection: bool = True             # learn a linear text head (False: embed_dim must equal text_dim)
    init_temperature: float = 0.07           # logit_scale starts at log(1 / init_temperature)
    max_logit_scale: float = 100.0           # clamp, as in CLIP

    def __post_init__(self) -> None:
        if self.pretrained and not self.open_clip_model:
            raise ValueError("pretrained needs open_clip_model (e.g. open_clip_model: RN50, pretrained: openai)")
        if not self.text_projection and self.embed_dim != self.text_dim:
            raise ValueError(f"without a text projection embed_dim ({self.embed_dim}) must equal text_dim "
                             f"({self.text_dim})")
        if len(self.layers) not in (1, 4):
            raise ValueError(f"layers must be 4 ResNet stage depths or 1 ViT depth, got {self.layers}")


class ImageTextOutput(NamedTuple):
    """L2-normalised features of both modalities and the temperature scale."""

    image_features: torch.Tensor   # [batch, embed_dim]
    text_features: torch.Tensor    # [batch, embed_dim]
    logit_scale: torch.Tensor      # scalar, exp(learned log-scale)


def build_vision_tower(config: ImageTowerConfig) -> tuple[nn.Module, int]:
    """The open_clip visual tower for ``config`` and its output dimension."""
    if config.open_clip_model:
        import open_clip  # only the online path needs the model registry / weights

        model = open_clip.create_model(config.open_clip_model, pretrained=config.pretrained or None)
        return model.visual, int(model.visual.output_dim)
    layers = config.layers if len(config.layers) == 4 else config.layers[0]
    vision_cfg = CLIPVisionCfg(layers=layers, width=config.width, head_width=config.head_width,
                               patch_size=config.patch_size, image_size=config.image_size,
                               timm_model_name=config.timm_model_name or None)
    return _build_vision_tower(config.embed_dim, vision_cfg), config.embed_dim


class ImageTextModel(nn.Module):
    """Trainable image tower + (optional) linear head over frozen text embeddings + logit scale."""

    def __init__(self, *, config: ImageTowerConfig):
        super().__init__()
        self.config = config
        self.visual, visual_dim = build_vision_tower(config)
        self.image_projection = nn.Identity() if visual_dim == config.embed_dim else \
            nn.Linear(visual_dim, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(config.text_dim, config.embed_dim) if config.text_projection \
            else nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        self.register_buffer("pixel_mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1) * 255.0)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0..255) pixels [batch, 3, H, W] -> normalised [batch, embed_dim]."""
        images = (pixels.float() - self.pixel_mean) / self.pixel_std
        return F.normalize(self.image_projection(self.visual(images)), dim=-1)

    def encode_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Frozen text embeddings [batch, text_dim] -> normalised [batch, embed_dim]."""
        return F.normalize(self.text_projection(text_embeddings.float()), dim=-1)

    def forward(self, pixels: torch.Tensor, text_embeddings: torch.Tensor) -> ImageTextOutput:
        """Both modalities in the joint space plus the clamped temperature scale."""
        scale = self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()
        return ImageTextOutput(self.encode_image(pixels), self.encode_text(text_embeddings), scale)

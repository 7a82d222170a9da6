"""Chapter 7: an image tower trained contrastively against frozen text embeddings (LiT-style)."""

from mmq.image_tower.checkpoint import checkpoint_hash, load_checkpoint, save_checkpoint
from mmq.image_tower.features import ImageEmbeddings, image_feature_path, item_image_embeddings
from mmq.image_tower.model import ImageTextModel, ImageTextOutput, ImageTowerConfig

__all__ = ["ImageEmbeddings", "ImageTextModel", "ImageTextOutput", "ImageTowerConfig", "checkpoint_hash",
           "image_feature_path", "item_image_embeddings", "load_checkpoint", "save_checkpoint"]

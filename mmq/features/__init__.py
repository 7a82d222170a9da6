"""Item features (text today; image features come from the multimodal chapter)."""

from mmq.features.text import (MINILM, TextFeatureConfig, build_item_texts, item_text_embeddings,
                               load_text_encoder, validate_embeddings)

__all__ = ["MINILM", "TextFeatureConfig", "build_item_texts", "item_text_embeddings", "load_text_encoder",
           "validate_embeddings"]

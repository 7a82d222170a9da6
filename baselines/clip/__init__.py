"""Course chapter 7: CLIP-style multimodal retrieval (fused text+image item vectors in FAISS)."""

from baselines.clip.index import FusionConfig, MultimodalIndex, SearchResult, fuse, normalize_rows

__all__ = ["FusionConfig", "MultimodalIndex", "SearchResult", "fuse", "normalize_rows"]

"""MMQ: multimodal mixture-of-quantization semantic IDs (arXiv 2508.15281), reproduced."""

__version__ = "0.1.0"

"""Query -> top-k image grids for held-out text queries (the chapter-7 qualitative figure)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from mmq import artifacts
from mmq.data.schema import InteractionDataset
from mmq.features.images import item_image_pixels
from mmq.features.text import TextFeatureConfig, build_item_texts, item_text_embeddings
from mmq.image_tower.checkpoint import load_checkpoint
from mmq.image_tower.evaluate import encode_pixels, encode_text_embeddings
from mmq.metrics import topk_from_scores


def query_grid(dataset: InteractionDataset, checkpoint: Path, text_config: TextFeatureConfig,
               gallery_items: np.ndarray, query_items: np.ndarray, path: Path, *, k: int = 5) -> None:
    """Save a PNG: one row per query item's text, its top-``k`` gallery images (true image outlined green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, _ = load_checkpoint(checkpoint)
    pixels = item_image_pixels(dataset, model.config.image_size, progress=False).pixels
    texts = build_item_texts(dataset, text_config)
    image_features = encode_pixels(model, pixels[gallery_items])
    text_features = encode_text_embeddings(model, item_text_embeddings(dataset, text_config,
                                                                       progress=False)[query_items])
    ranked = gallery_items[topk_from_scores(text_features @ image_features.T, k)]  # [queries, k] item indices
    figure, axes = plt.subplots(len(query_items), k + 1, figsize=(1.6 * (k + 1) + 1.5, 1.9 * len(query_items)))
    axes = np.atleast_2d(axes)
    for row, (query, retrieved) in enumerate(zip(query_items, ranked)):
        axes[row, 0].text(0.0, 0.5, textwrap.fill(texts[query], 26), fontsize=7, va="center")
        axes[row, 0].axis("off")
        for column, item in enumerate(retrieved, start=1):
            axis = axes[row, column]
            axis.imshow(np.asarray(pixels[item]).transpose(1, 2, 0))
            axis.set_xticks([])
            axis.set_yticks([])
            hit = item == query
            for spine in axis.spines.values():
                spine.set_edgecolor("green" if hit else "lightgray")
                spine.set_linewidth(3 if hit else 0.5)
    figure.suptitle(f"{dataset.name}: held-out text query -> top-{k} images of {len(gallery_items):,} "
                    "held-out items (green = the query's own image)", fontsize=8)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)

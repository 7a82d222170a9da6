"""Cross-modal retrieval metrics: instance Recall@k both directions and label precision@k."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from mmq.data.schema import InteractionDataset
from mmq.image_tower.model import ImageTextModel
from mmq.metrics import recall_at_k, topk_from_scores


@torch.no_grad()
def encode_pixels(model: ImageTextModel, pixels: np.ndarray, *, batch_size: int = 512, progress: bool = False,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """Joint-space image features float32 ``[n, embed_dim]`` for uint8 pixels ``[n, 3, H, W]``."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="encode images", disable=not progress, mininterval=5):
        batch = torch.from_numpy(np.array(pixels[start:start + batch_size])).to(device)  # copy of a memmap
        chunks.append(model.encode_image(batch).float().cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float32)


@torch.no_grad()
def encode_text_embeddings(model: ImageTextModel, text_embeddings: np.ndarray,
                           device: torch.device | str = "cpu") -> np.ndarray:
    """Frozen text embeddings projected into the joint space, float32 ``[n, embed_dim]``."""
    features = model.encode_text(torch.from_numpy(np.asarray(text_embeddings, dtype=np.float32)).to(device))
    return features.float().cpu().numpy()


def label_matrix(dataset: InteractionDataset, field: str, *, separator: str | None = None) -> np.ndarray:
    """Multi-hot ``[num_items, num_labels]`` bool of ``field`` (split on ``separator`` for label lists)."""
    values = dataset.items[field].fillna("").astype(str).tolist()
    sets = [{part.strip() for part in value.split(separator)} if separator else {value.strip()} for value in values]
    sets = [{label for label in labels if label} for labels in sets]
    vocabulary = {label: index for index, label in enumerate(sorted(set().union(*sets)))}
    matrix = np.zeros((len(values), max(1, len(vocabulary))), dtype=bool)
    for row, labels in enumerate(sets):
        matrix[row, [vocabulary[label] for label in labels]] = True
    return matrix


def label_precision(ranked: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> float:
    """Mean fraction of retrieved items sharing at least one label with the query (precision@width)."""
    shared = (query_labels[:, None, :] & gallery_labels[ranked]).any(axis=2)  # [queries, k]
    return float(shared.mean())


def cross_modal_metrics(image_features: np.ndarray, text_features: np.ndarray, labels: np.ndarray, *,
                        ks: tuple[int, ...] = (1, 5, 10), precision_k: int = 10) -> dict[str, float]:
    """Row ``i`` of both matrices is item ``i``: instance Recall@k (t->i, i->t) and label precision@k."""
    if image_features.shape != text_features.shape or len(labels) != len(image_features):
        raise ValueError(f"shapes differ: images {image_features.shape}, texts {text_features.shape}, "
                         f"labels {labels.shape}")
    targets = np.arange(len(image_features))
    width = max(*ks, precision_k)
    metrics: dict[str, float] = {"gallery_size": int(len(image_features))}
    for direction, queries, gallery in (("text_to_image", text_features, image_features),
                                        ("image_to_text", image_features, text_features)):
        ranked = topk_from_scores(queries @ gallery.T, width)
        for k in ks:
            metrics[f"{direction}/recall@{k}"] = recall_at_k(ranked, targets, k)
        metrics[f"{direction}/category_precision@{precision_k}"] = label_precision(ranked[:, :precision_k],
                                                                                  labels, labels)
    return metrics


def same_modality_precision(features: np.ndarray, labels: np.ndarray, *, k: int = 10) -> float:
    """Label precision@k of item->item search within one modality, the query item itself excluded."""
    exclude = [np.array([index]) for index in range(len(features))]
    ranked = topk_from_scores(features @ features.T, k, exclude=exclude)
    return label_precision(ranked, labels, labels)

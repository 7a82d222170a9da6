"""Beauty user-history two-tower: next-item retrieval from the user's last items, in-batch (+ mined hard) negatives.

A comparator in the Beauty generative-retrieval table, beside SASRec-CE and the frozen chapter-1
content retriever (MiniLM title of the last item, exact FAISS search), on the same leave-one-out
split (TIGER protocol: history <= 20 items, last item test, second-last validation).

Towers (both end in an L2-normalised ``embedding_dim`` vector; score = cosine):

* item representation, shared by both towers: ``text_projection(MiniLM title embedding) + item-ID
  embedding`` (the MiniLM vectors are the frozen chapter-1 features; the ID table starts at zero, so
  an untrained model is a projected content model and IDs learn what titles miss);
* item tower: ``normalise(item_head(item representation))``;
* user tower: the history's item representations plus a recency embedding (column of the
  right-aligned history = how many steps back), dropout, then ``pooling`` -- [choice] ``attention``:
  additive attention (``v . tanh(W h_t)``) plus a learned per-recency bias, softmax over the real
  items, weighted sum; ``mean`` and ``last`` are the simpler alternatives -- then
  ``normalise(user_head(pooled))``.

Loss: InfoNCE with in-batch negatives at a fixed ``temperature`` via sentence-transformers'
``MultipleNegativesRankingLoss.compute_loss_from_embeddings([users, positives(, hard negatives)])``.
That method only reads embeddings; its constructor's ``model`` argument is used by ``forward`` alone,
so the loss is built with ``model=None`` (``scale = 1 / temperature``). With ``hard_negatives`` every
epoch from ``hard_negative_start`` on first mines, with the current weights, the FAISS ``IndexFlatIP``
top ``hard_negative_pool`` items of every training example's user vector, drops the example's target
and every item of the user's training sequence (false negatives: the history, the target and the
user's later training items), and samples one of the rest per example, seeded by ``(seed, epoch)``.
Each query then competes against the batch's positives and the batch's hard negatives (2 x batch).

Training examples: every (prefix of the training sequence, <= ``max_history`` items -> next item)
pair (TIGER's sliding windows, :func:`mmq.recommenders.sequences.next_item_samples`). Validation after
every ``eval_every`` epochs ranks the full catalogue for each validation user (history items removed,
:mod:`mmq.recommenders.evaluation`); ``best.pt`` keeps the epoch with the best ``selection_metric``;
test is scored once with those weights; ``per_event.npz`` keeps each event's target rank. The loop is
:func:`mmq.training.run_training`, so a killed run resumes after its last epoch and ends as an
uninterrupted one (mining depends only on the restored weights and ``(seed, epoch)``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from mmq.data import leave_one_out, load_dataset
from mmq.features import TextFeatureConfig, item_text_embeddings
from mmq.features.text import recipe_name
from mmq.metrics.per_event import save_chosen_next_item
from mmq.recommenders.evaluation import METRIC_KS, NextItemEvaluation, score_ranked, topk_excluding_history
from mmq.recommenders.sequences import next_item_samples, pad_histories
from mmq.semantic_ids.base import save_torch_state
from mmq.training import BEST_FILE, LoopSettings, TrainingTask, run_training

LOGGER = logging.getLogger(__name__)

POOLINGS = ("attention", "mean", "last")
SELECTION_METRICS = tuple(f"{name}@{k}" for name in ("ndcg", "recall") for k in METRIC_KS)


@dataclasses.dataclass(frozen=True)
class UserTwoTowerConfig:
    """User-history two-tower settings (defaults: Beauty, MiniLM titles, in-batch + mined hard negatives, CPU).

    [tuned]: chosen on validation NDCG@10 of seed 0 with hard negatives, 8-10 epochs each: temperature 0.1 (0.0614)
    over 0.05 (0.0576) and 0.2 (0.0555); then width 128 (0.0640) over 64; at width 64 / temperature 0.05 neither
    dropout 0.5 (0.0533), learning rate 3e-4 (0.0559) nor weight decay 1e-6 (0.0585) helped. Both YAML rows use
    the same values (the in-batch row differs only in ``hard_negatives``).
    """

    dataset: str = "beauty"
    kcore: int | None = None            # None: the dataset's default (5-core)
    max_history: int = 20               # TIGER protocol: items of history in every example and evaluation
    text: TextFeatureConfig = TextFeatureConfig()   # frozen MiniLM title embeddings (the chapter-1 features)
    embedding_dim: int = 128            # width of the item representation and of both towers' outputs [tuned]
    item_ids: bool = True               # add a learned item-ID embedding to the projected text (False: text only)
    pooling: str = "attention"          # user tower over the history: "attention" | "mean" | "last"
    dropout: float = 0.2                # on the history's item representations (user tower only)
    temperature: float = 0.1            # InfoNCE temperature (loss scale = 1 / temperature) [tuned]
    hard_negatives: bool = True         # also mine one hard negative per example (False: in-batch negatives only)
    hard_negative_pool: int = 100       # sample it from the model's FAISS top-k items (minus false negatives)
    hard_negative_start: int = 1        # first epoch (0-based) that mines; earlier epochs use in-batch negatives only
    learning_rate: float = 1e-3         # Adam
    weight_decay: float = 0.0           # Adam L2
    batch_size: int = 256               # examples per step (= in-batch negatives + 1)
    epochs: int = 15                    # upper bound (~8 min on 1 shared thread); early stopping usually ends sooner
    eval_every: int = 1                 # epochs between validation passes
    patience: int = 3                   # evaluations without improvement before stopping (0: never)
    selection_metric: str = "ndcg@10"   # validation metric that picks the checkpoint
    num_threads: int = 1                # torch / FAISS CPU threads (1: the shared 2-core machine)
    cpu: bool = False                   # force CPU even when a GPU is present
    profile: str = "cpu"                # label recorded in the report: "cpu" or "gpu" settings

    def __post_init__(self) -> None:
        if self.profile not in ("cpu", "gpu"):
            raise ValueError(f"profile must be 'cpu' or 'gpu', got {self.profile!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(f"selection_metric must be one of {SELECTION_METRICS}, got {self.selection_metric!r}")
        if not self.temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (in-batch negatives need other examples), got {self.batch_size}")
        for name in ("max_history", "embedding_dim", "hard_negative_pool", "epochs", "eval_every", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0 or self.hard_negative_start < 0:
            raise ValueError(f"patience and hard_negative_start must be >= 0, got {self.patience}, "
                             f"{self.hard_negative_start}")
        if not self.learning_rate > 0.0 or self.weight_decay < 0.0:
            raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, "
                             f"{self.weight_decay}")

    def model_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :class:`UserHistoryTwoTower` besides the text features."""
        return {"embedding_dim": self.embedding_dim, "max_history": self.max_history, "item_ids": self.item_ids,
                "pooling": self.pooling, "dropout": self.dropout}


# --- model -------------------------------------------------------------------------------------


class UserHistoryTwoTower(nn.Module):
    """User tower over a right-aligned history ``[B, H]`` (``-1`` = padding), item tower over item indices."""

    def __init__(self, text_features: torch.Tensor | np.ndarray, *, embedding_dim: int = 64, max_history: int = 20,
                 item_ids: bool = True, pooling: str = "attention", dropout: float = 0.2) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        text = torch.as_tensor(np.asarray(text_features, dtype=np.float32))
        if text.ndim != 2:
            raise ValueError(f"text_features must be [num_items, dim], got {tuple(text.shape)}")
        self.num_items, self.max_history, self.pooling = int(text.shape[0]), max_history, pooling
        self.register_buffer("text", text, persistent=False)   # frozen features: not in the weights files
        self.text_projection = nn.Linear(text.shape[1], embedding_dim)
        self.item_ids = nn.Embedding(self.num_items, embedding_dim) if item_ids else None
        if self.item_ids is not None:
            nn.init.zeros_(self.item_ids.weight)   # an untrained model is a (projected) content model
        self.recency = nn.Embedding(max_history, embedding_dim)   # column of the right-aligned history
        nn.init.normal_(self.recency.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)
        if pooling == "attention":
            self.attention = nn.Linear(embedding_dim, embedding_dim)
            self.attention_vector = nn.Parameter(torch.zeros(embedding_dim))
            self.recency_bias = nn.Parameter(torch.zeros(max_history))   # learned recency weighting
        self.user_head = nn.Linear(embedding_dim, embedding_dim)
        self.item_head = nn.Linear(embedding_dim, embedding_dim)

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Shared item representation ``[..., d]`` of item indices (padding ``-1`` gives item 0's; mask it)."""
        items = items.clamp(min=0)
        representation = self.text_projection(self.text[items])
        if self.item_ids is not None:
            representation = representation + self.item_ids(items)
        return representation

    def encode_items(self, items: torch.Tensor) -> torch.Tensor:
        """Item tower: L2-normalised ``[..., d]``."""
        return F.normalize(self.item_head(self.item_representation(items)), dim=-1)

    def all_items(self) -> torch.Tensor:
        """Item tower over the whole catalogue ``[num_items, d]``."""
        return self.encode_items(torch.arange(self.num_items, device=self.text.device))

    def encode_users(self, histories: torch.Tensor) -> torch.Tensor:
        """User tower: L2-normalised ``[B, d]`` from right-aligned histories ``[B, H]`` (H <= max_history)."""
        if histories.ndim != 2 or histories.shape[1] > self.max_history:
            raise ValueError(f"histories must be [B, <= {self.max_history}], got {tuple(histories.shape)}")
        width = histories.shape[1]
        mask = histories >= 0                                                        # [B, H]
        columns = torch.arange(self.max_history - width, self.max_history, device=histories.device)
        hidden = self.dropout(self.item_representation(histories) + self.recency(columns))   # [B, H, d]
        if self.pooling == "last":
            pooled = hidden[:, -1]
        else:
            if self.pooling == "mean":
                logits = torch.zeros(mask.shape, device=hidden.device)
            else:
                logits = torch.tanh(self.attention(hidden)) @ self.attention_vector + self.recency_bias[columns]
            weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
            weights = torch.nan_to_num(weights, nan=0.0)                            # an all-padding row -> zeros
            pooled = (weights.unsqueeze(-1) * hidden).sum(dim=1)
        return F.normalize(self.user_head(pooled), dim=-1)

    @torch.no_grad()
    def score_histories(self, histories: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine scores ``[B, num_items]`` of every item after each history (``items``: precomputed item tower)."""
        return self.encode_users(histories) @ (self.all_items() if items is None else items).T


def info_nce_loss(temperature: float):
    """sentence-transformers' MultipleNegativesRankingLoss at ``temperature`` (embeddings only, no model).

    ``compute_loss_from_embeddings([queries, positives, *negatives], labels)`` never reads ``self.model``
    (only ``forward`` does, to embed sentences), so ``model=None`` is enough; ``labels`` is unused.
    """
    from sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking import (
        MultipleNegativesRankingLoss)

    return MultipleNegativesRankingLoss(model=None, scale=1.0 / temperature)


# --- data and mining -------------------------------------------------------------------------


class TrainingExamples(NamedTuple):
    """Every (history -> next item) pair of the training sequences and whose it is."""

    histories: np.ndarray      # [examples, max_history] right-aligned, -1 padded
    targets: np.ndarray        # [examples]
    users: np.ndarray          # [examples] index into the training sequences
    user_items: np.ndarray     # sorted unique keys user * num_items + item of every user's training items

    def __len__(self) -> int:
        return int(len(self.targets))


def training_examples(sequences: Sequence[np.ndarray], num_items: int, max_history: int = 20) -> TrainingExamples:
    """TIGER sliding windows of ``sequences`` (:func:`next_item_samples`) with each example's user."""
    histories, targets = next_item_samples(sequences, max_history=max_history)
    counts = [max(len(sequence) - 1, 0) for sequence in sequences]
    users = np.repeat(np.arange(len(sequences), dtype=np.int64), counts)
    keys = np.concatenate([user * num_items + np.asarray(sequence, dtype=np.int64)
                           for user, sequence in enumerate(sequences) if len(sequence)])
    return TrainingExamples(histories, targets, users, np.unique(keys))


def mine_hard_negatives(queries: np.ndarray, items: np.ndarray, users: np.ndarray, user_items: np.ndarray, *,
                        pool: int, rng: np.random.Generator, batch_size: int = 16384) -> tuple[np.ndarray, int]:
    """One hard negative per query: a uniform draw from its FAISS ``IndexFlatIP`` top-``pool`` items minus the
    items of its user's training sequence (``user_items``: sorted ``user * num_items + item`` keys).

    A query whose whole top-``pool`` is excluded draws a random item outside its user's set instead.
    Returns the negatives ``[queries]`` and how many queries needed that fallback.
    """
    num_items = len(items)
    pool = min(pool, num_items)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(np.ascontiguousarray(items, dtype=np.float32))
    negatives = np.empty(len(queries), dtype=np.int64)
    fallbacks = 0
    for start in range(0, len(queries), batch_size):
        rows = slice(start, start + batch_size)
        _, candidates = index.search(np.ascontiguousarray(queries[rows], dtype=np.float32), pool)   # [b, pool]
        keys = users[rows, None] * num_items + candidates
        allowed = (candidates >= 0) & ~np.isin(keys, user_items)
        draws = np.where(allowed, rng.random(candidates.shape), -1.0)
        chosen = draws.argmax(axis=1)
        negatives[rows] = candidates[np.arange(len(chosen)), chosen]
        for row in np.flatnonzero(~allowed.any(axis=1)):   # every top item is a false negative: random one
            fallbacks += 1
            user = users[start + row]
            while True:
                item = int(rng.integers(num_items))
                if not _contains(user_items, user * num_items + item):
                    negatives[start + row] = item
                    break
    return negatives, fallbacks


def _contains(sorted_keys: np.ndarray, key: int) -> bool:
    position = np.searchsorted(sorted_keys, key)
    return bool(position < len(sorted_keys) and sorted_keys[position] == key)


# --- scoring -----------------------------------------------------------------------------------


@torch.no_grad()
def encode_histories(model: UserHistoryTwoTower, histories: np.ndarray, *, batch_size: int = 4096,
                     device: torch.device | str = "cpu") -> np.ndarray:
    """User vectors ``[rows, d]`` (float32) of padded histories, in eval mode."""
    was_training = model.training
    model.eval()
    vectors = [model.encode_users(torch.from_numpy(histories[start:start + batch_size]).to(device)).cpu()
               for start in range(0, len(histories), batch_size)]
    model.train(was_training)
    return torch.cat(vectors).numpy()


@torch.no_grad()
def rank_next_items(model: UserHistoryTwoTower, histories: Sequence[np.ndarray], *, max_history: int, k: int,
                    batch_size: int = 1024, device: torch.device | str = "cpu") -> np.ndarray:
    """Top-``k`` full-catalogue items ``[users, k]`` after each history, history items excluded."""
    was_training = model.training
    model.eval()
    items = model.all_items()
    padded = torch.from_numpy(pad_histories(histories, max_history))
    ranked = []
    for start in range(0, len(padded), batch_size):
        batch = padded[start:start + batch_size].to(device)
        ranked.append(topk_excluding_history(model.score_histories(batch, items), batch, k).cpu())
    model.train(was_training)
    return torch.cat(ranked).numpy()


def score(model: UserHistoryTwoTower, histories: Sequence[np.ndarray], targets: np.ndarray, *, max_history: int,
          ks: tuple[int, ...] = METRIC_KS, device: torch.device | str = "cpu") -> NextItemEvaluation:
    """Next-item metrics and per-event target ranks of ``model`` on (histories, targets)."""
    return score_ranked(rank_next_items(model, histories, max_history=max_history, k=max(ks), device=device),
                        targets, ks=ks)


# --- training ----------------------------------------------------------------------------------


class TrainingResult(NamedTuple):
    """What a finished training leaves behind (``best.pt`` holds the selected weights)."""

    best_path: Path
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    train_seconds: float
    train_examples: int        # examples seen, over all epochs run
    history: list[dict[str, Any]]


class UserTwoTowerTask(TrainingTask):
    """One epoch over shuffled examples (after mining hard negatives) and a full-catalogue validation."""

    def __init__(self, model: UserHistoryTwoTower, optimizer, examples: TrainingExamples,
                 valid: tuple[Sequence[np.ndarray], np.ndarray], config: UserTwoTowerConfig, *, seed: int,
                 device: torch.device | str, progress: bool) -> None:
        self.model, self.optimizer, self.examples, self.config = model, optimizer, examples, config
        self.valid_histories, self.valid_targets = valid
        self.seed, self.device, self.progress = seed, device, progress
        self.loss = info_nce_loss(config.temperature)
        self.histories = torch.from_numpy(examples.histories)
        self.targets = torch.from_numpy(examples.targets)
        self.train_examples = 0

    def mines(self, index: int) -> bool:
        """Whether epoch ``index`` uses mined hard negatives."""
        return self.config.hard_negatives and index >= self.config.hard_negative_start

    def mine(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Hard negatives of every example under the current weights, drawn with ``(seed, epoch)``."""
        started = time.perf_counter()
        queries = encode_histories(self.model, self.examples.histories, device=self.device)
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            items = self.model.all_items().cpu().numpy()
            self.model.train(was_training)
        negatives, fallbacks = mine_hard_negatives(
            queries, items, self.examples.users, self.examples.user_items, pool=self.config.hard_negative_pool,
            rng=np.random.default_rng([self.seed, index, 1]))
        return negatives, {"mining_seconds": round(time.perf_counter() - started, 2),
                           "mining_fallbacks": int(fallbacks)}

    def train_unit(self, index: int) -> dict[str, Any]:
        """Mine (if due), then every example once in an order shuffled by ``(seed, epoch)``; mean loss."""
        config, fields = self.config, {}
        negatives = None
        if self.mines(index):
            mined, fields = self.mine(index)
            negatives = torch.from_numpy(mined)
        order = np.random.default_rng([self.seed, index]).permutation(len(self.examples))
        self.model.train()
        losses = []
        batches = [order[start:start + config.batch_size] for start in range(0, len(order), config.batch_size)]
        bar = tqdm(batches, desc=f"user two-tower epoch {index + 1}/{config.epochs}", mininterval=10, leave=False,
                   disable=not self.progress)
        for rows in bar:
            if len(rows) < 2:   # a lone last example has no in-batch negative
                continue
            histories = self.histories[rows].to(self.device)
            targets = self.targets[rows].to(self.device)
            embeddings = [self.model.encode_users(histories), self.model.encode_items(targets)]
            if negatives is not None:
                embeddings.append(self.model.encode_items(negatives[rows].to(self.device)))
            loss = self.loss.compute_loss_from_embeddings(embeddings, None)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        self.train_examples += len(order)
        return {"train_loss": round(float(np.mean(losses)), 5), "hard_negatives": negatives is not None, **fields}

    def unit_record(self, number: int, fields: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Epoch, mean loss, mining time, wall time and throughput."""
        return {"epoch": number, **fields, "epoch_seconds": round(seconds, 2),
                "train_examples_per_second": round(len(self.examples) / seconds, 1)}

    def evaluate(self, index: int) -> dict[str, Any]:
        """Validation next-item metrics (history items excluded)."""
        return score(self.model, self.valid_histories, self.valid_targets, max_history=self.config.max_history,
                     device=self.device).metrics

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        """CPU weights, their epoch and validation metrics (read by :func:`load_best`)."""
        weights = {key: value.cpu() for key, value in self.model.state_dict().items()}
        save_torch_state(path, {"model": weights, "epoch": number, "valid": metrics})

    def checkpointed(self) -> dict[str, Any]:
        """Model and optimiser."""
        return {"model": self.model, "optimizer": self.optimizer}

    def state_dict(self) -> dict[str, Any]:
        """The checkpointed parts and the examples-seen counter."""
        return {**super().state_dict(), "train_examples": self.train_examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.train_examples = state["train_examples"]


def train_user_two_tower(model: UserHistoryTwoTower, examples: TrainingExamples,
                         valid: tuple[Sequence[np.ndarray], np.ndarray], config: UserTwoTowerConfig,
                         directory: Path | None, *, seed: int, device: torch.device | str = "cpu",
                         progress: bool = True) -> TrainingResult:
    """Train ``model``; keep the best validation weights in ``directory/best.pt`` (resumes from ``state.pt``)."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    task = UserTwoTowerTask(model, optimizer, examples, valid, config, seed=seed, device=device, progress=progress)
    settings = LoopSettings(max_units=config.epochs, eval_every=config.eval_every, patience=config.patience,
                            selection_metric=config.selection_metric, description="user two-tower")
    result = run_training(task, settings, directory, seed=seed, progress=progress)
    best_path = directory / BEST_FILE if directory is not None else Path(BEST_FILE)
    return TrainingResult(best_path, result.best_unit, result.best_metrics, result.units_run, result.train_seconds,
                          task.train_examples, result.history)


def load_best(model: UserHistoryTwoTower, best_path: Path) -> UserHistoryTwoTower:
    """Load the validation-selected weights written by :func:`train_user_two_tower` into ``model``."""
    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["model"])
    return model


# --- the run -----------------------------------------------------------------------------------


def run_user_two_tower(config: UserTwoTowerConfig, seed: int, directory: Path, *,
                       progress: bool = True) -> dict[str, Any]:
    """Train, pick the best validation epoch, score test once; return the metrics dict."""
    torch.set_num_threads(config.num_threads)
    faiss.omp_set_num_threads(config.num_threads)
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    split = leave_one_out(dataset, max_history=config.max_history)
    text = item_text_embeddings(dataset, config.text, progress=progress)
    examples = training_examples(split.train_sequences, dataset.num_items, config.max_history)
    device = "cuda" if torch.cuda.is_available() and not config.cpu else "cpu"
    torch.manual_seed(seed)
    model = UserHistoryTwoTower(text, **config.model_arguments())
    num_params = sum(parameter.numel() for parameter in model.parameters())
    LOGGER.info("user two-tower on %s: %d items, %d users, %d examples, %d parameters, hard negatives %s",
                config.dataset, dataset.num_items, len(split.train_sequences), len(examples), num_params,
                config.hard_negatives)
    result = train_user_two_tower(model, examples, split.history_and_target("valid"), config, directory, seed=seed,
                                  device=device, progress=progress)
    best = load_best(UserHistoryTwoTower(text, **config.model_arguments()), result.best_path).to(device)
    valid = score(best, *split.history_and_target("valid"), max_history=config.max_history, device=device)
    started = time.perf_counter()
    test = score(best, *split.history_and_target("test"), max_history=config.max_history, device=device)
    test_eval_seconds = round(time.perf_counter() - started, 2)
    per_event = save_chosen_next_item(directory, valid, test, reported_valid=result.best_valid)
    LOGGER.info("user two-tower best epoch %d: valid %s %.4f, test %.4f", result.best_epoch, config.selection_metric,
                result.best_valid[config.selection_metric], test.metrics[config.selection_metric])
    mining = [entry["mining_seconds"] for entry in result.history if "mining_seconds" in entry]
    return {
        "valid": result.best_valid,
        "test": test.metrics,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "evaluations": sum(1 for entry in result.history if "valid" in entry),
        "train_seconds": round(result.train_seconds, 2),
        "seconds_per_epoch": round(result.train_seconds / max(result.epochs_run, 1), 2),
        "mining_seconds": round(float(sum(mining)), 2),
        "train_examples_per_second": round(result.train_examples / max(result.train_seconds, 1e-9), 1),
        "test_eval_seconds": test_eval_seconds,
        "profile": config.profile,
        "device": device,
        "num_params": num_params,
        "num_train_examples": len(examples),
        "num_threads": config.num_threads,
        "text_recipe": recipe_name(config.text.recipe),
        "dataset": dataset.statistics(),
        "history": result.history,
        "per_event": per_event,
    }


def run(config: UserTwoTowerConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``user_two_tower`` kind (a forced rerun starts fresh: the registry deletes its state)."""
    return run_user_two_tower(config, seed, directory, progress=progress)

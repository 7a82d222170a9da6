"""The chapter-6 tasks as vectors + code sources: Beauty content retrieval, the Myntra query benchmark, synthetic.

- **beauty** (chapter 1): a user's recency-weighted history query searches the MiniLM title embeddings, the
  history is removed, the held-out next item is the target. Code sources are the Beauty SID runs (RQ-KMeans,
  RQ-VAE, MMQ stage 1), rebuilt through the registry when their git-ignored files are absent. MMQ's query is
  the same recency-weighted mean taken per modality (title text and the collaborative vector), encoded
  through MMQ's own experts.
- **myntra** (chapter 2): generated test queries with graded labels over 44k products, frozen MiniLM query and
  product embeddings (cached by chapter 2). No Myntra SID run exists, so RQ-KMeans / RQ-VAE are fitted on the
  product embeddings here and cached by content under ``<cache>/multiphase/``.
- **scale**: chapter 3's 1M synthetic corpus (a mixture fitted to every real item-text vector) and its 2,000
  queries (+ 2,000 validation draws); RQ-KMeans fitted on it; the single-phase IVF / HNSW indexes are the ones
  chapter 3 cached for the same vectors (built here with its settings when absent). The "target" is the exact
  nearest item.
- **synthetic**: Gaussian clusters, RQ-KMeans codes; the tiny end-to-end task.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from baselines.multiphase.evaluation import CodeSource
from baselines.multiphase.query_codes import encoder_for

LOGGER = logging.getLogger(__name__)


class QuerySet(NamedTuple):
    """One split's queries: vectors for phase 2, per-source encoder inputs, exclusions and the task metric."""

    vectors: np.ndarray                      # [nq, d]
    inputs: dict[str, Any]                   # source name -> encoder inputs for these queries
    exclude: np.ndarray | None               # [nq, H] -1 padded (Beauty: the history)
    score: Callable[..., dict]               # (ranked ids [rows, k], rows=slice(None)) -> metrics


class Task(NamedTuple):
    """A task: the catalogue, its code sources (with empty query inputs) and the valid / test query sets."""

    item_vectors: np.ndarray
    sources: list[CodeSource]
    splits: dict[str, QuerySet]
    info: dict[str, Any]
    indexes: dict[str, Any] | None = None    # prebuilt single-phase indexes {"ivf": (index, nlist), "hnsw": index}


def with_queries(sources: list[CodeSource], queries: QuerySet) -> list[CodeSource]:
    """The sources with ``query_inputs`` set to this query set's inputs."""
    return [CodeSource(source.name, source.item_codes, source.encoder, queries.inputs[source.name])
            for source in sources]


def encoding_agreement(source_encoder, item_inputs: Any, codes: np.ndarray) -> float:
    """Share of catalogue items whose probe-1 query encoding equals their stored semantic codes."""
    return round(float((source_encoder.encode(item_inputs) == codes).all(axis=1).mean()), 6)


def select_decay(vectors: np.ndarray, padded: np.ndarray, targets: np.ndarray, config) -> tuple[float, dict]:
    """``config.decay``, or chapter 1's choice: the decay grid value with the best exact NDCG@10 on VALID."""
    from baselines.faiss_ann.content_retrieval import build_flat, history_queries, retrieve
    from mmq.metrics import ranking_metrics

    if config.decay is not None:
        return float(config.decay), {}
    flat = build_flat(vectors)
    selection = {str(decay): ranking_metrics(retrieve(flat, history_queries(padded, vectors, decay), padded, 10)[0],
                                             targets, (10,))["ndcg@10"] for decay in config.decay_grid}
    return float(max(config.decay_grid, key=lambda decay: selection[str(decay)])), selection


def beauty_task(config) -> Task:
    """Chapter 1's Beauty content retrieval with the configured SID runs as code sources."""
    from baselines.faiss_ann.content_retrieval import history_queries
    from mmq import registry
    from mmq.data import leave_one_out, load_dataset
    from mmq.features import TextFeatureConfig, item_text_embeddings
    from mmq.features.modalities import load_item_modalities
    from mmq.metrics import ranking_metrics
    from mmq.recommenders.sequences import pad_histories

    dataset = load_dataset("beauty")
    split = leave_one_out(dataset, max_history=config.max_history)
    vectors = item_text_embeddings(dataset, TextFeatureConfig(recipe=("title",)))
    padded = {name: pad_histories(split.history_and_target(name)[0], config.max_history) for name in ("valid", "test")}
    targets = {name: split.history_and_target(name)[1] for name in ("valid", "test")}
    decay, selection = select_decay(vectors, padded["valid"], targets["valid"], config)
    sources, per_source_inputs, info = [], {}, {"decay": decay, "decay_selection_valid": selection, "sources": {}}
    for path in config.tokenizers:
        table = registry.semantic_id_table(path, config.tokenizer_seed)
        tokenizer = registry.load_tokenizer(table.directory / "tokenizer")
        codes = table.table[:, :tokenizer.code_length]           # drop the de-dup digit
        kind, run_config = registry.load_experiment(path)
        name = Path(path).stem.removeprefix("beauty_")
        if kind.name == "mmq_tokenizer":
            modalities, _ = load_item_modalities(run_config.inputs)
            item_inputs = modalities
            per_source_inputs[name] = {split_name: {modality: history_queries(padded[split_name], array, decay)
                                                    for modality, array in modalities.items()}
                                       for split_name in padded}
        else:
            item_inputs = vectors
            per_source_inputs[name] = {split_name: None for split_name in padded}  # = the phase-2 query
        encoder = encoder_for(tokenizer)
        sources.append(CodeSource(name, codes, encoder, None))
        info["sources"][name] = {"config": path, "run_id": table.report.get("run_id"), "sha256": table.sha256,
                                 "structure": encoder.structure, "codebook_sizes": list(tokenizer.codebook_sizes),
                                 "probe1_equals_item_codes": encoding_agreement(encoder, item_inputs, codes)}
    splits = {}
    for split_name in padded:
        queries = history_queries(padded[split_name], vectors, decay)
        inputs = {name: queries if per_split[split_name] is None else per_split[split_name]
                  for name, per_split in per_source_inputs.items()}
        splits[split_name] = QuerySet(queries, inputs, padded[split_name],
                                      lambda ranked, rows=slice(None), t=targets[split_name]: ranking_metrics(
                                          ranked, t[rows], (10,)))
    return Task(vectors, sources, splits, info)


def myntra_task(config) -> Task:
    """Chapter 2's generated Myntra queries over frozen MiniLM product embeddings; tokenizers fitted here."""
    from baselines.multiphase.fitted import fitted_tokenizer
    from baselines.two_tower.model import build_two_tower, cached_base
    from baselines.two_tower.search import QuerySearchConfig, evaluate_ranked, load_benchmark, query_texts

    search_config = QuerySearchConfig(method="frozen", num_threads=config.num_threads)
    benchmark, texts, _ = load_benchmark(search_config)
    model = build_two_tower(search_config)
    vectors = model.apply_head(cached_base(model, texts, "product", search_config), "product").astype(np.float32)
    sources, info = [], {"benchmark": benchmark.summary(), "sources": {}}
    for method in config.fit_methods:
        tokenizer, key = fitted_tokenizer(method, vectors, config)
        codes = tokenizer.encode(vectors)
        encoder = encoder_for(tokenizer)
        sources.append(CodeSource(method, codes, encoder, None))
        info["sources"][method] = {"cache_key": key, "structure": encoder.structure,
                                   "codebook_sizes": list(tokenizer.codebook_sizes),
                                   "probe1_equals_item_codes": encoding_agreement(encoder, vectors, codes)}
    splits = {}
    for split_name in ("valid", "test"):
        queries = benchmark.split(split_name)
        base = cached_base(model, query_texts(queries)[0], "query", search_config)
        query_vectors = model.apply_head(base, "query").astype(np.float32)
        splits[split_name] = QuerySet(query_vectors, {method: query_vectors for method in config.fit_methods}, None,
                                      lambda ranked, rows=slice(None), q=queries: evaluate_ranked(
                                          benchmark, q[rows], ranked, (10,))[0])
    return Task(vectors, sources, splits, info)


def synthetic_task(config) -> Task:
    """Clustered Gaussian vectors; each query's exact nearest item is its "target"; tokenizers fitted here."""
    from baselines.multiphase.fitted import fitted_tokenizer
    from mmq.metrics import ranking_metrics

    rng = np.random.default_rng(config.seed)
    centres = rng.normal(size=(config.synthetic_clusters, config.synthetic_dim)).astype(np.float32)

    def sample(count: int) -> np.ndarray:
        points = centres[rng.integers(0, len(centres), count)] + 0.3 * rng.normal(size=(count, config.synthetic_dim))
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)

    vectors = sample(config.synthetic_items)
    sources = []
    for method in config.fit_methods:
        tokenizer, _ = fitted_tokenizer(method, vectors, config)
        sources.append(CodeSource(method, tokenizer.encode(vectors), encoder_for(tokenizer), None))
    splits = {}
    for split_name in ("valid", "test"):
        queries = sample(config.synthetic_queries)
        nearest = np.argmax(queries @ vectors.T, axis=1)
        splits[split_name] = QuerySet(queries, {method: queries for method in config.fit_methods}, None,
                                      lambda ranked, rows=slice(None), t=nearest: ranking_metrics(
                                          ranked, t[rows], (10,)))
    return Task(vectors, sources, splits, {"sources": {method: {} for method in config.fit_methods}})


def scale_task(config) -> Task:
    """Chapter 3's 1M synthetic corpus; RQ-KMeans fitted on it; chapter 3's cached IVF / HNSW indexes."""
    from baselines.faiss_ann.content_retrieval import build_flat
    from baselines.faiss_ann.scale import DEFAULT_FAMILIES, AnnScaleConfig, synthetic_corpus
    from baselines.faiss_ann.sweep import cached_index, nlist_for
    from baselines.multiphase.fitted import fitted_tokenizer
    from mmq.data.paths import cache_dir
    from mmq.metrics import ranking_metrics

    ann = AnnScaleConfig()
    model, vectors, test_queries, fingerprint = synthetic_corpus(ann, config.seed)
    queries = {"valid": model.sample(ann.synthetic_queries, config.seed + 5), "test": test_queries}
    families = {family.name: family for family in DEFAULT_FAMILIES}
    cache = cache_dir() / "ann" / "indexes"
    indexes = {"ivf": (cached_index(vectors, fingerprint, families["IVF-Flat"], seed=config.seed, cache=cache)[0],
                       nlist_for(len(vectors))),
               "hnsw": cached_index(vectors, fingerprint, families["HNSW32"], seed=config.seed, cache=cache)[0]}
    sources = []
    for method in config.fit_methods:
        tokenizer, key = fitted_tokenizer(method, vectors, config)
        sources.append(CodeSource(method, tokenizer.encode(vectors), encoder_for(tokenizer), None))
    splits = {}
    flat = build_flat(vectors)
    for split_name, split_queries in queries.items():
        nearest = flat.search(split_queries, 1)[1][:, 0]
        splits[split_name] = QuerySet(split_queries, {method: split_queries for method in config.fit_methods}, None,
                                      lambda ranked, rows=slice(None), t=nearest: ranking_metrics(
                                          ranked, t[rows], (10,)))
    info = {"corpus": {"num_items": int(len(vectors)), "fingerprint": fingerprint, "mixture": model.fingerprint()},
            "sources": {method: {} for method in config.fit_methods}}
    return Task(vectors, sources, splits, info, indexes)


TASKS = {"beauty": beauty_task, "myntra": myntra_task, "synthetic": synthetic_task, "scale": scale_task}

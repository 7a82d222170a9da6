"""Serving settings (a YAML such as ``baselines/serving/myntra_search.yaml`` holds overrides; it is not a run, so it
lives beside the code, not under ``experiments/``) and the engine built from run folders.

Models and indexes load once at start from the run folder the YAML names: the chapter-2 two-tower (its selected
query tower and the product embeddings it wrote), searched through a faiss index built from those embeddings.
The server binds a loopback address only (this project never listens on other interfaces; put a reverse proxy
in front of it to expose it).
"""

from __future__ import annotations

import dataclasses
import logging

LOGGER = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class ABConfig:
    """An A/B experiment routed inside the served API (requests with a ``user_id``); off unless ``enabled``."""

    enabled: bool = False
    name: str = "search-pipeline"
    salt: str = "ab-1"
    arms: tuple[str, ...] = ("control", "treatment")
    split: tuple[float, ...] = (0.5, 0.5)
    pipelines: tuple[str, ...] = ("dense", "dense+lightgbm")    # one per arm
    exposure_log: str = "reports/serving_exposures.jsonl"       # append-only JSON lines (git-ignored)

    def __post_init__(self) -> None:
        from baselines.serving.ab import Experiment
        from baselines.serving.engine import parse_pipeline

        Experiment(self.name, self.salt, self.arms, self.split)      # validates arms and split
        if len(self.pipelines) != len(self.arms):
            raise ValueError(f"ab.pipelines needs one pipeline per arm ({len(self.arms)}), got {list(self.pipelines)}")
        for spec in self.pipelines:
            parse_pipeline(spec)

    def experiment(self):
        from baselines.serving.ab import Experiment

        return Experiment(self.name, self.salt, self.arms, self.split)


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the API serves and how (defaults: the chapter-2 two-tower with hard negatives, seed 0)."""

    search_run: str = "experiments/ch2/myntra_two_tower.yaml"   # a query_search run with best.pt + embeddings
    seed: int = 0
    index_factory: str = "Flat"            # faiss factory over the product embeddings (e.g. HNSW32)
    max_query_chars: int = 256             # longer queries are refused (422), as chapter 2's cleaner caps them
    max_k: int = 100
    embedding_cache_size: int = 10_000     # query-embedding LRU entries
    result_cache_size: int = 10_000        # result cache entries ...
    result_ttl_seconds: float = 300.0      # ... and their time to live
    host: str = "127.0.0.1"
    port: int = 8000
    num_threads: int = 1                   # torch / faiss / BLAS threads per worker (one per worker is fastest)
    dashboard_run: str | None = "experiments/ch3/ann_pareto.yaml"   # GET /dashboard: this chapter-3 report + live panel
    pipeline: str = "dense"                # default search pipeline: '<dense|multiphase>[+<lightgbm|lightgbm_ce>]'
    multiphase: bool = False               # load the multiphase stage (RQ-KMeans SIDs of the served embeddings)
    multiphase_code_length: int = 3
    multiphase_codebook_size: int = 256
    multiphase_probe: int = 8              # code paths probed per query
    multiphase_min_candidates: int = 1000  # back off to shorter prefixes until this many candidates
    rerank_run: str = "experiments/ch4/myntra_rerank.yaml"   # a finished chapter-4 run (same catalogue)
    rerankers: tuple[str, ...] = ()        # among lightgbm, lightgbm_ce
    recommenders: tuple[str, ...] = ()     # POST /recommend backends: generative | two_tower | sasrec
                                           # (baselines.serving.recommend) | capstone (chapter 10); first = default
    max_history: int = 200                 # POST /recommend: longest accepted history
    ab: ABConfig = ABConfig()
    query_encoder: str = "torch"           # torch | torch_int8 | onnx | onnx_int8 | static (baselines.serving.encoders)
    pad_to: int = 0                        # BENCHMARK ONLY: add synthetic products (a mixture fitted to the served
                                           # embeddings, ids "synthetic-<n>") until the index holds pad_to items
    workers: int = 1                       # uvicorn worker processes (each loads its own copy)

    def __post_init__(self) -> None:
        from baselines.serving.engine import parse_pipeline

        retrieval, rerank = parse_pipeline(self.pipeline)
        if retrieval == "multiphase" and not self.multiphase:
            raise ValueError("pipeline uses multiphase retrieval but multiphase is false")
        if rerank is not None and rerank not in self.rerankers:
            raise ValueError(f"pipeline reranks with {rerank!r}, which rerankers {list(self.rerankers)} does not load")
        if self.ab.enabled:
            for spec in self.ab.pipelines:
                arm_retrieval, arm_rerank = parse_pipeline(spec)
                if (arm_retrieval == "multiphase" and not self.multiphase) or (
                        arm_rerank is not None and arm_rerank not in self.rerankers):
                    raise ValueError(f"A/B pipeline {spec!r} needs a stage this config does not load")
        if self.host not in LOOPBACK:
            raise ValueError(f"host must be a loopback address {list(LOOPBACK)}, got {self.host!r}")
        if not 1 <= self.port <= 65535 or self.max_k < 1 or self.max_query_chars < 1 or self.num_threads < 1:
            raise ValueError("port must be in [1, 65535] and max_k, max_query_chars, num_threads >= 1")
        from baselines.serving.encoders import KINDS

        if self.query_encoder not in KINDS:
            raise ValueError(f"query_encoder must be one of {list(KINDS)}, got {self.query_encoder!r}")
        if self.workers < 1 or self.pad_to < 0:
            raise ValueError(f"workers must be >= 1 and pad_to >= 0, got {self.workers} / {self.pad_to}")
        if self.pad_to and (self.multiphase or self.rerankers):
            raise ValueError("pad_to (benchmark padding) serves dense retrieval only: the multiphase stage and the "
                             "rerankers are bound to the real catalogue")


def dashboard_report(config: ServingConfig) -> dict | None:
    """The chapter-3 report's metrics for GET /dashboard (None when not configured or not finished)."""
    from mmq import artifacts, registry

    if config.dashboard_run is None or not registry.is_done(config.dashboard_run, 0):
        return None
    return artifacts.read_json(registry.run_directory(config.dashboard_run, 0) / "report.json")["metrics"]


def pad_catalogue(embeddings, item_ids: list[str], records: dict, total: int, *, seed: int = 0):
    """Benchmark padding: synthetic product vectors from a mixture fitted to ``embeddings`` (chapter 3's sampler)
    appended until ``total`` rows; ids ``synthetic-<n>``, records say so."""
    import numpy as np

    from baselines.faiss_ann.corpus import fit_mixture

    extra = total - len(item_ids)
    mixture = fit_mixture(np.ascontiguousarray(embeddings, dtype=np.float32), num_components=1024, rank=8, seed=seed)
    synthetic = mixture.sample(extra, seed=seed).astype(np.float32)
    ids = [f"synthetic-{number}" for number in range(extra)]
    records = {**records, **{item: {"text": "(synthetic benchmark padding)"} for item in ids}}
    return np.concatenate([embeddings, synthetic]), item_ids + ids, records


def load_engine(config: ServingConfig):
    """The :class:`~baselines.serving.engine.SearchEngine` of ``config.search_run`` (its run must be finished)."""
    import faiss
    import torch

    from baselines.serving.engine import SearchEngine, build_version
    from baselines.two_tower.search import load_benchmark, load_two_tower
    from mmq import registry

    torch.set_num_threads(config.num_threads)
    faiss.omp_set_num_threads(config.num_threads)
    kind, search_config = registry.load_experiment(config.search_run)
    if kind.name != "query_search":
        raise ValueError(f"{config.search_run} is a {kind.name!r} run; serving needs a query_search run")
    directory = registry.run_directory(config.search_run, config.seed)
    if not registry.is_done(config.search_run, config.seed) or not (directory / "best.pt").exists():
        raise FileNotFoundError(f"{directory} has no finished run with weights; train it first: "
                                f"python scripts/run.py {config.search_run} --seeds {config.seed}")
    model, embeddings = load_two_tower(search_config, directory)
    benchmark, texts, item_ids = load_benchmark(search_config)
    records = {item: {"text": text} for item, text in zip(item_ids, texts)}
    if config.pad_to > len(item_ids):
        embeddings, item_ids, records = pad_catalogue(embeddings, list(item_ids), records, config.pad_to,
                                                      seed=config.seed)
    version = f"{registry.run_name(config.search_run)}-seed{config.seed}-{config.index_factory}-{config.query_encoder}"
    if config.pad_to:
        version += f"-padded{len(item_ids)}"
    multiphase = rerankers = None
    if config.multiphase:
        from baselines.serving.stages import fit_multiphase

        multiphase = fit_multiphase(embeddings, code_length=config.multiphase_code_length,
                                    codebook_size=config.multiphase_codebook_size, seed=config.seed,
                                    probe=config.multiphase_probe, min_candidates=config.multiphase_min_candidates,
                                    num_threads=config.num_threads)
    if config.rerankers:
        from baselines.serving.stages import load_rerankers

        _, rerank_config = registry.load_experiment(config.rerank_run)
        if registry.run_name(rerank_config.two_tower) != registry.run_name(config.search_run):
            raise ValueError(f"{config.rerank_run} reranks {rerank_config.two_tower}'s candidates, but the server "
                             f"retrieves with {config.search_run}")
        rerankers = load_rerankers(config.rerank_run, config.seed, config.rerankers, benchmark.attributes, texts)
    index = build_version(version, embeddings, item_ids, records, factory=config.index_factory,
                          multiphase=multiphase, rerankers=rerankers)

    from baselines.serving.encoders import load_query_encoder

    encode = load_query_encoder(config.query_encoder, model, search_config, num_threads=config.num_threads,
                                benchmark=benchmark, product_texts=texts)

    LOGGER.info("serving %s: %d products, dim %d", version, len(item_ids), embeddings.shape[1])
    return SearchEngine(encode, index, embedding_cache_size=config.embedding_cache_size,
                        result_cache_size=config.result_cache_size, result_ttl_seconds=config.result_ttl_seconds)


def create_served_app(config: ServingConfig):
    """The FastAPI app of ``config``: engine, optional recommenders, A/B routing and the dashboard report."""
    from baselines.serving.ab import ExposureLog
    from baselines.serving.app import create_app

    recommenders = {}
    if config.recommenders:
        from baselines.serving.recommend import load_recommender

        for name in config.recommenders:
            if name == "capstone":     # MMQ multiphase -> user two-tower rerank (chapter 10)
                from baselines.serving.capstone_beauty import load_beauty_pipeline

                recommenders[name] = load_beauty_pipeline()
            else:
                recommenders[name] = load_recommender(name, seed=config.seed, num_threads=config.num_threads)
    experiment = config.ab.experiment() if config.ab.enabled else None
    return create_app(load_engine(config), max_query_chars=config.max_query_chars, max_k=config.max_k,
                      dashboard_report=dashboard_report(config), pipeline=config.pipeline, experiment=experiment,
                      arm_pipelines=dict(zip(config.ab.arms, config.ab.pipelines)) if experiment else None,
                      exposure_log=ExposureLog(config.ab.exposure_log) if experiment else None,
                      recommenders=recommenders, max_history=config.max_history)

"""The comparators' experiment kinds, registered into :mod:`mmq.registry` when ``baselines`` is imported.

One line per kind: the YAML's ``kind:`` value -> config dataclass + runner. Baseline tokenizers also
register how to load their saved ``tokenizer/`` folders, so stage 2 and servers can read them.
"""

from __future__ import annotations

from baselines.clip import experiment as clip_retrieval
from baselines.faiss_ann import experiment as dense_retrieval
from baselines.faiss_ann import scale as ann_scale
from baselines.multiphase import experiment as multiphase
from baselines.multiphase import hybrid_experiment as generative_hybrid
from baselines.sasrec import experiment as sasrec
from baselines.sid_tokenizers import experiment as text_sid_tokenizer
from baselines.sid_tokenizers import multimodal as multimodal_sid_tokenizer
from baselines.reranker import rerank
from baselines.two_tower import search as query_search
from baselines.sid_tokenizers.modality import TOKENIZER_CLASSES, ModalityAlignedTokenizer, ModalitySeparatedTokenizer
from baselines.two_tower import user_history as user_two_tower
from mmq.registry import (ExperimentKind, Upstream, image_inputs_upstream, register, register_tokenizer_loader,
                          sid_artifacts)


def _all_metrics(report):
    return dict(report["metrics"])


KINDS = (
    ExperimentKind("text_sid_tokenizer", text_sid_tokenizer.SemanticIdConfig, text_sid_tokenizer.run,
                   "RQ-VAE / RQ-KMeans / OPQ semantic IDs from MiniLM item text", semantic_id_metrics=_all_metrics,
                   artifacts=sid_artifacts, typical_minutes=3),
    ExperimentKind("multimodal_sid_tokenizer", multimodal_sid_tokenizer.MultimodalBaselineConfig,
                   multimodal_sid_tokenizer.run, "MA / MS baseline semantic IDs on MMQ's item modalities",
                   semantic_id_metrics=_all_metrics, upstream=image_inputs_upstream, artifacts=sid_artifacts,
                   typical_minutes=3),
    ExperimentKind("sasrec", sasrec.SASRecConfig, sasrec.run, "SASRec-CE next-item baseline (item IDs)",
                   artifacts=lambda config: ("best.pt",), typical_minutes=20),
    ExperimentKind("dense_retrieval", dense_retrieval.DenseRetrievalConfig, dense_retrieval.run,
                   "chapter 1: FAISS content retrieval (Flat / IVF / HNSW / PQ) on item text", typical_minutes=3),
    ExperimentKind("clip_retrieval", clip_retrieval.ClipRetrievalConfig, clip_retrieval.run,
                   "chapter 7: text / image / fused next-item retrieval with the image tower",
                   upstream=lambda config: [Upstream("image_tower", config.image_tower, config.tower_seed)],
                   typical_minutes=2),
    ExperimentKind("query_search", query_search.QuerySearchConfig, query_search.run,
                   "chapter 2: query -> product retrieval on the generated Myntra benchmark (BM25, MiniLM, two-tower)",
                   artifacts=lambda config: ("best.pt", "product_embeddings.npy") if config.method == "two_tower" else (), typical_minutes=10),
    ExperimentKind("rerank", rerank.RerankConfig, rerank.run,
                   "chapter 4: LightGBM lambdarank and cross-encoder reranking of the two-tower's candidates",
                   upstream=rerank.rerank_upstream, typical_minutes=25,
                   artifacts=lambda config: (rerank.LIGHTGBM_FILE,) + ((rerank.LIGHTGBM_CE_FILE, rerank.CROSS_ENCODER_DIR)
                                                                      if config.cross_encoder else ())),
    ExperimentKind("user_two_tower", user_two_tower.UserTwoTowerConfig, user_two_tower.run,
                   "chapter 2: Beauty user-history two-tower next-item retriever (in-batch + mined hard negatives)",
                   artifacts=lambda config: ("best.pt",), typical_minutes=5),
    ExperimentKind("ann_scale", ann_scale.AnnScaleConfig, ann_scale.run,
                   "chapter 3: index tuning at scale (real ~63k + synthetic 1M): Pareto, latency, batching, 10M",
                   typical_minutes=35),
    ExperimentKind("multiphase", multiphase.MultiphaseConfig, multiphase.run,
                   "chapter 6: semantic-ID candidates (multi-probe, backoff) -> exact vector rerank vs Flat / IVF / HNSW",
                   upstream=multiphase.multiphase_upstream, typical_minutes=8),
    ExperimentKind("generative_hybrid", generative_hybrid.HybridConfig, generative_hybrid.run,
                   "chapter 6: generative beam -> candidate SIDs -> vector rerank by the history query (Beauty)",
                   upstream=generative_hybrid.hybrid_upstream, typical_minutes=6),
)

register(*KINDS)
for _tokenizer_class in (*TOKENIZER_CLASSES.values(), ModalityAlignedTokenizer, ModalitySeparatedTokenizer):
    register_tokenizer_loader(_tokenizer_class.kind, _tokenizer_class.load)

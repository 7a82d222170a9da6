"""Semantic-ID tokenizers (the paper's baselines): RQ-VAE, RQ-KMeans, OPQ, MA/MS wrappers, de-dup."""

from mmq.tokenizers.base import Tokenizer, quality_report, validate_codes, validate_embeddings
from mmq.tokenizers.dedup import append_dedup_digit, dedup_report, sid_collision_rate, sid_table_hash
from mmq.tokenizers.modality import (
    ModalityAlignedTokenizer,
    ModalitySeparatedTokenizer,
    load_tokenizer,
    make_modality_tokenizer,
    make_tokenizer,
    split_code_length,
)
from mmq.tokenizers.opq import OPQTokenizer
from mmq.tokenizers.rq_kmeans import RQKMeansTokenizer, balanced_assignment
from mmq.tokenizers.rq_vae import RQVAETokenizer
from mmq.tokenizers.rq_vae_model import RQVAE, QuantizerOutput, ResidualQuantizer, RQVAEOutput

__all__ = [
    "Tokenizer", "quality_report", "validate_codes", "validate_embeddings",
    "append_dedup_digit", "dedup_report", "sid_collision_rate", "sid_table_hash",
    "ModalityAlignedTokenizer", "ModalitySeparatedTokenizer", "load_tokenizer",
    "make_modality_tokenizer", "make_tokenizer", "split_code_length",
    "OPQTokenizer", "RQKMeansTokenizer", "balanced_assignment", "RQVAETokenizer",
    "RQVAE", "QuantizerOutput", "ResidualQuantizer", "RQVAEOutput",
]

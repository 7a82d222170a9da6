"""Semantic-ID tokenizers the paper compares MMQ with: RQ-VAE, RQ-KMeans, OPQ and their MA/MS wrappers."""

from baselines.sid_tokenizers.modality import (
    ModalityAlignedTokenizer,
    ModalitySeparatedTokenizer,
    load_tokenizer,
    make_modality_tokenizer,
    make_tokenizer,
    split_code_length,
)
from baselines.sid_tokenizers.opq import OPQTokenizer
from baselines.sid_tokenizers.rq_kmeans import RQKMeansTokenizer, balanced_assignment
from baselines.sid_tokenizers.rq_vae import RQVAETokenizer
from baselines.sid_tokenizers.rq_vae_model import RQVAE, QuantizerOutput, ResidualQuantizer, RQVAEOutput

__all__ = [
    "ModalityAlignedTokenizer", "ModalitySeparatedTokenizer", "load_tokenizer",
    "make_modality_tokenizer", "make_tokenizer", "split_code_length",
    "OPQTokenizer", "RQKMeansTokenizer", "balanced_assignment", "RQVAETokenizer",
    "RQVAE", "QuantizerOutput", "ResidualQuantizer", "RQVAEOutput",
]

"""Semantic-ID machinery shared by every tokenizer: protocol and quality, fitting, de-dup digit, hierarchy."""

from mmq.semantic_ids.base import Tokenizer, quality_report, validate_codes, validate_embeddings
from mmq.semantic_ids.dedup import append_dedup_digit, dedup_report, sid_collision_rate, sid_table_hash

__all__ = ["Tokenizer", "quality_report", "validate_codes", "validate_embeddings",
           "append_dedup_digit", "dedup_report", "sid_collision_rate", "sid_table_hash"]

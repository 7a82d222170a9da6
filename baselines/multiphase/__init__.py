"""Course chapter 6: multiphase retrieval, semantic-ID coarse candidates -> exact vector search inside them."""

from .evaluation import CodeSource, CurveConfig, evaluate_task
from .hybrid import beam_code_paths, hybrid_rerank
from .prefix_index import PrefixIndex
from .query_codes import ParallelCodeEncoder, ResidualCodeEncoder, encoder_for
from .search import MultiphaseSearcher

__all__ = ["CodeSource", "CurveConfig", "MultiphaseSearcher", "ParallelCodeEncoder", "PrefixIndex",
           "ResidualCodeEncoder", "beam_code_paths", "encoder_for", "evaluate_task", "hybrid_rerank"]

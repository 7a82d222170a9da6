"""MMQ stage 1: the shared-specific multimodal mixture-of-quantization tokenizer (docs/method.md §2)."""

from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.experts import EXPERT_TYPES, ExpertGroup, MLPExperts, register_expert_type
from mmq.mmq_tokenizer.model import MMQModel, MMQOutput
from mmq.mmq_tokenizer.quantizer import ExpertCodebooks, QuantizerOutput
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer

__all__ = ["EXPERT_TYPES", "ExpertCodebooks", "ExpertGroup", "MLPExperts", "MMQConfig", "MMQModel", "MMQOutput",
           "MMQTokenizer", "QuantizerOutput", "register_expert_type"]

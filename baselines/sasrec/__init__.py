"""SASRec-CE baseline: ID-based causal transformer with full-softmax cross-entropy."""

from baselines.sasrec.experiment import SASRecConfig, run_sasrec
from baselines.sasrec.model import SASRec, SASRecOutput, next_item_loss
from baselines.sasrec.train import TrainingResult, evaluate, rank_next_items, train_sasrec

__all__ = ["SASRec", "SASRecConfig", "SASRecOutput", "TrainingResult", "evaluate", "next_item_loss",
           "rank_next_items", "run_sasrec", "train_sasrec"]

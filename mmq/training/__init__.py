"""The one resumable training loop every trainer runs on (:mod:`mmq.training.loop`) and its checkpoints."""

from mmq.training.checkpoint import BEST_FILE, STATE_FILE, capture_rng_state, restore_rng_state
from mmq.training.loop import LoopResult, LoopSettings, TrainingTask, has_saved_state, log_metrics, run_training

__all__ = ["BEST_FILE", "STATE_FILE", "LoopResult", "LoopSettings", "TrainingTask", "capture_rng_state",
           "has_saved_state", "log_metrics", "restore_rng_state", "run_training"]

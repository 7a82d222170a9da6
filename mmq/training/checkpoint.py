"""Everything a resumed run needs besides the task's own state: RNG states and the atomic state file.

A training state holds every random number generator a step can draw from -- python ``random``,
numpy's global generator, torch's CPU generator and, where CUDA exists, every CUDA device's -- so a
run restored from it draws the same dropout masks, shuffles and restarts as the run that wrote it.
State files are written through :func:`mmq.semantic_ids.base.save_torch_state` (temporary file, then
``os.replace``): a run killed while writing leaves the previous complete state.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmq.semantic_ids.base import save_torch_state

LOGGER = logging.getLogger(__name__)
STATE_FILE = "state.pt"   # the resumable training state of a run folder
BEST_FILE = "best.pt"     # the validation-selected weights of a run folder
STATE_FORMAT = 1          # bumped when the layout of a state file changes


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random number generator (python, numpy, torch CPU, CUDA)."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].copy()}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every global random number generator back where :func:`capture_rng_state` found it."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            LOGGER.warning("state saved with %d CUDA device(s) resumed with %d: CUDA RNG not restored",
                           len(state["cuda"]), torch.cuda.device_count() if torch.cuda.is_available() else 0)


def save_training_state(path: Path, *, loop: dict[str, Any], task: dict[str, Any], seed: int) -> None:
    """Write ``path`` atomically: loop progress, the task's state, the seed and every RNG state."""
    save_torch_state(path, {"format": STATE_FORMAT, "seed": seed, "loop": loop, "task": task,
                            "rng": capture_rng_state()})


def load_training_state(path: Path, *, seed: int) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state` for the same ``seed``.

    Not ``weights_only``: the file is this loop's own and its history holds numpy scalars.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} was written by an older trainer (no format {STATE_FORMAT} training state); "
                         "delete it (or rerun with --force) to start this run over")
    if state["seed"] != seed:
        raise ValueError(f"{path} belongs to a run with seed {state['seed']}, not {seed}")
    return state

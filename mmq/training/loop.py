"""One resumable training loop: units, validation selection, early stopping, checkpoints, history.

Every trainer in the project (generative retrieval, PPNet ranking, SASRec, the image tower, MMQ
stage 1) repeats the same control flow around its own step; :func:`run_training` owns it once:

* a run is a sequence of *units* -- epochs, or windows of steps for step-based trainers -- trained
  by :meth:`TrainingTask.train_unit` (index 0, 1, ...; data order comes from ``(seed, index)`` or
  from generators the task keeps in its state);
* after every ``eval_every``-th unit and after the last one, :meth:`TrainingTask.evaluate` scores
  validation; the unit with the highest ``selection_metric`` (strictly higher than every earlier
  one) is the best, and :meth:`TrainingTask.save_best` writes its weights to ``best.pt``;
* training stops after ``max_units`` units or after ``patience`` validations without improvement;
* after every unit ``state.pt`` is rewritten atomically with the loop's progress (units done, best
  so far, early-stopping counter, history, train seconds), the task's state (models, optimisers,
  schedulers, generators) and every RNG state, so a run killed at any point and restarted on the
  same folder continues exactly as the uninterrupted run would have -- dropout included;
* each unit's history record goes to :func:`log_metrics`: the log, and TensorBoard scalars through
  accelerate's tracker (:mod:`mmq.training.tracking`; ``MMQ_TENSORBOARD=0`` turns them off).

Records count units from 1 (``{"epoch": 3, ...}`` is the third epoch); ``best_unit`` 0 means no
validation has happened. Without a ``directory`` nothing is written (an in-memory run).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from tqdm.auto import tqdm

from mmq.training.checkpoint import BEST_FILE, STATE_FILE, load_training_state, restore_rng_state, save_training_state
from mmq.training.tracking import open_tracker, scalars

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """How long to train, when to validate, what to select on and when to stop."""

    max_units: int                   # units (epochs or windows of steps) of the full schedule
    eval_every: int = 1              # units between validations; the last unit is always validated
    patience: int = 0                # validations without improvement before stopping (0: never stop early)
    selection_metric: str = ""       # validation metric maximised to pick best.pt ("": no validation)
    unit: str = "epoch"              # what one unit is called in logs
    description: str = "training"    # progress-bar and log label

    def __post_init__(self) -> None:
        if self.max_units < 0 or self.eval_every < 1 or self.patience < 0:
            raise ValueError(f"max_units >= 0, eval_every >= 1 and patience >= 0 required, got {self}")


class LoopResult(NamedTuple):
    """What a finished (or resumed-and-finished) loop reports."""

    best_unit: int                   # 1-based unit with the best validation score; 0: none validated
    best_score: float | None         # its ``selection_metric``; None: none validated
    best_metrics: dict[str, Any]     # its full validation metrics ({} when none)
    units_run: int                   # units trained, over all (resumed) sessions
    train_seconds: float             # wall time inside train_unit, over all sessions
    history: list[dict[str, Any]]    # one record per unit (validation fields on validated units)
    stopped_early: bool              # patience ran out before max_units


class TrainingTask(abc.ABC):
    """The task-specific half of a training loop: ``train_unit`` always; ``evaluate`` and ``save_best``
    for tasks that select on validation (``LoopSettings.selection_metric`` set)."""

    @abc.abstractmethod
    def train_unit(self, index: int) -> dict[str, Any]:
        """Train unit ``index`` (0-based); returns its history fields (e.g. mean losses)."""

    def unit_record(self, number: int, fields: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The history record of unit ``number`` (1-based) from its fields and wall time."""
        return {"epoch": number, **fields}

    def evaluate(self, index: int) -> dict[str, Any]:
        """Validation metrics after unit ``index`` (must hold the loop's ``selection_metric``)."""
        raise TypeError(f"{type(self).__name__} has no validation: run it with an empty selection_metric")

    def evaluation_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The fields a validation adds to its unit's history record."""
        return {"valid": metrics}

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        """Write the current weights as the best ones to ``path`` (atomically)."""
        raise TypeError(f"{type(self).__name__} keeps no best weights: run it with an empty selection_metric")

    def checkpointed(self) -> dict[str, Any]:
        """The objects with a ``state_dict`` a resumed run needs (models unwrapped, optimisers, schedulers)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything of the task a resumed run needs (override to add generators or counters)."""
        return {name: part.state_dict() for name, part in self.checkpointed().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for name, part in self.checkpointed().items():
            part.load_state_dict(state[name])


def log_metrics(metrics: Mapping[str, Any], step: int, *, name: str = "training", tracker=None) -> None:
    """Report one unit's record: to the log, and as scalars to ``tracker`` (TensorBoard) when given."""
    LOGGER.info("%s %d: %s", name, step, dict(metrics))
    if tracker is not None:
        tracker.log(scalars(metrics), step=step)


@dataclasses.dataclass
class _Progress:
    """The loop's own resumable state (saved as a plain dict)."""

    units: int = 0
    best_unit: int = 0
    best_score: float = float("-inf")
    best_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    bad_evaluations: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def has_saved_state(directory: Path | None) -> bool:
    """Whether :func:`run_training` on ``directory`` would resume instead of starting fresh."""
    return directory is not None and (directory / STATE_FILE).exists()


def run_training(task: TrainingTask, settings: LoopSettings, directory: Path | None, *, seed: int,
                 accelerator=None, progress: bool = True) -> LoopResult:
    """Train ``task`` unit by unit under ``settings``, resuming from ``directory/state.pt`` if present.

    ``accelerator`` (an ``accelerate.Accelerator``, optional): only its main process writes files,
    and every process waits for the writes.
    """
    state = _Progress()
    if has_saved_state(directory):
        saved = load_training_state(directory / STATE_FILE, seed=seed)
        task.load_state_dict(saved["task"])
        state = _Progress(**saved["loop"])
        restore_rng_state(saved["rng"])   # last: nothing may draw between this and the next unit
        LOGGER.info("%s: resuming %s after %s %d (best %s at %d)", settings.description, directory, settings.unit,
                    state.units, settings.selection_metric or "-", state.best_unit)
    elif directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    is_main = accelerator is None or accelerator.is_main_process
    tracker = open_tracker(directory, settings.description) if is_main else None
    bar = tqdm(total=settings.max_units, initial=state.units, desc=settings.description, unit=settings.unit,
               disable=not progress or not is_main)
    while state.units < settings.max_units and not _patience_exhausted(state, settings):
        index = state.units
        started = time.perf_counter()
        fields = task.train_unit(index)
        seconds = time.perf_counter() - started
        state.units, state.train_seconds = index + 1, state.train_seconds + seconds
        record = task.unit_record(state.units, fields, seconds)
        state.history.append(record)
        improved, metrics = False, {}
        if settings.selection_metric and (state.units % settings.eval_every == 0
                                          or state.units == settings.max_units):
            metrics = task.evaluate(index)
            record.update(task.evaluation_record(metrics))
            improved = metrics[settings.selection_metric] > state.best_score
            if improved:
                state.best_unit, state.best_score, state.best_metrics = (
                    state.units, metrics[settings.selection_metric], metrics)
                state.bad_evaluations = 0
            else:
                state.bad_evaluations += 1
        if directory is not None:
            if is_main:
                if improved:   # best.pt before state.pt: a state never names a best that is not on disk
                    task.save_best(directory / BEST_FILE, state.units, metrics)
                save_training_state(directory / STATE_FILE, loop=dataclasses.asdict(state), task=task.state_dict(),
                                    seed=seed)
            if accelerator is not None:
                accelerator.wait_for_everyone()
        log_metrics(record, state.units, name=settings.description, tracker=tracker)
        bar.update(1)
    bar.close()
    if tracker is not None:
        tracker.finish()
    stopped_early = state.units < settings.max_units
    if stopped_early:
        LOGGER.info("%s: stopped after %s %d, %d validations without improvement", settings.description,
                    settings.unit, state.units, state.bad_evaluations)
    return LoopResult(best_unit=state.best_unit, best_score=state.best_score if state.best_unit else None,
                      best_metrics=state.best_metrics, units_run=state.units, train_seconds=state.train_seconds,
                      history=state.history, stopped_early=stopped_early)


def _patience_exhausted(state: _Progress, settings: LoopSettings) -> bool:
    """Whether the last ``patience`` validations all failed to beat the best (0: never)."""
    return settings.patience > 0 and state.bad_evaluations >= settings.patience

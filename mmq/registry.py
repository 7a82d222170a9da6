"""The one experiment registry: a config's ``kind`` -> its config dataclass and its runner.

Every YAML under ``experiments/`` names its kind on a top-level ``kind:`` line; the rest of the
file holds overrides of that kind's dataclass defaults. Nothing is guessed from keys and no runner is
named by a module string: a kind is registered as an :class:`ExperimentKind` object.

- ``mmq`` registers the method's kinds (MMQ stage 1, ranking, generative retrieval, image tower)
  at the bottom of this file.
- ``baselines`` registers the comparators' kinds when it is imported (``baselines/registry.py``);
  ``mmq`` never imports ``baselines``, so code that only imports ``mmq`` gets a clear error naming
  the missing kind. Entry points (``scripts/run.py``, the table scripts, the tests) import both.

One config + seed -> one run folder (:mod:`mmq.runs`); :func:`run_or_load` builds it unless it is done.
A kind whose runs yield a semantic-ID table says how to read its SID metrics (``semantic_id_metrics``),
so downstream runs read any tokenizer's SIDs through :func:`semantic_id_run`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from mmq.config import ConfigError, from_dict, read_yaml_mapping
from mmq.generative import experiment as generative
from mmq.image_tower import experiment as image_tower
from mmq.mmq_tokenizer import experiment as mmq_tokenizer
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
from mmq.ranking import experiment as ranking
from mmq.runs import REPOSITORY_ROOT, checkpoints_root, experiment_name, start_run
from mmq.semantic_ids.base import read_tokenizer_json
from mmq.training.checkpoint import STATE_FILE

LOGGER = logging.getLogger(__name__)

KIND_KEY = "kind"
Runner = Callable[[Any, int, Path, bool], dict]  # (config, seed, run directory, progress) -> metrics


def _all_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    return dict(report["metrics"])


@dataclasses.dataclass(frozen=True)
class ExperimentKind:
    """What a ``kind:`` value means: the dataclass its YAML overrides and the function that runs it."""

    name: str
    config_class: type
    runner: Runner
    description: str
    # SID-producing kinds: report -> the metrics holding ``semantic_id_table`` (None: yields no SIDs)
    semantic_id_metrics: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # kind-specific check after loading (e.g. a stage-2 run must have finetune: true to give SIDs)
    validate: Callable[[Any], None] | None = None


_KINDS: dict[str, ExperimentKind] = {}
_TOKENIZER_LOADERS: dict[str, Callable[[Path], Any]] = {}


def register(*kinds: ExperimentKind) -> None:
    """Add experiment kinds (a name registered twice with another definition is an error)."""
    for kind in kinds:
        existing = _KINDS.get(kind.name)
        if existing is not None and existing != kind:
            raise ValueError(f"experiment kind {kind.name!r} is registered twice")
        _KINDS[kind.name] = kind


def register_tokenizer_loader(tokenizer_kind: str, loader: Callable[[Path], Any]) -> None:
    """How to load a saved tokenizer whose ``tokenizer.json`` says ``kind: tokenizer_kind``."""
    _TOKENIZER_LOADERS[tokenizer_kind] = loader


def kinds() -> dict[str, ExperimentKind]:
    """Every registered kind by name (the method's own kinds are always present)."""
    return dict(_KINDS)


def get_kind(name: str, *, where: str = "") -> ExperimentKind:
    """The registered kind ``name``, or a ConfigError listing the known ones."""
    known = kinds()
    if name not in known:
        hint = "" if "baselines" in _imported_packages() else " (baseline kinds register when `baselines` is imported)"
        raise ConfigError(f"{where}unknown experiment kind {name!r}; registered kinds: {sorted(known)}{hint}")
    return known[name]


def resolve_path(config_path: str | Path) -> Path:
    """``config_path`` as given, or relative to the repository when it does not exist as given."""
    path = Path(config_path)
    if not path.exists() and not path.is_absolute() and (REPOSITORY_ROOT / path).exists():
        return REPOSITORY_ROOT / path
    return path


def load_experiment(config_path: str | Path) -> tuple[ExperimentKind, Any]:
    """Read a YAML once: its kind and the validated config dataclass (unknown keys are errors)."""
    path = resolve_path(config_path)
    values = read_yaml_mapping(path)
    if KIND_KEY not in values:
        raise ConfigError(f"{path}: no top-level '{KIND_KEY}:' line; registered kinds: {sorted(kinds())}")
    kind = get_kind(values.pop(KIND_KEY), where=f"{path}: ")
    try:
        config = from_dict(kind.config_class, values)
    except (ConfigError, ValueError, TypeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    if kind.validate is not None:
        try:
            kind.validate(config)
        except ValueError as error:
            raise ConfigError(f"{path}: {error}") from None
    return kind, config


def run_directory(config_path: str | Path, seed: int) -> Path:
    """The run folder of ``config_path`` for ``seed`` (whether or not it exists)."""
    return checkpoints_root() / experiment_name(resolve_path(config_path)) / f"seed{seed}"


def is_done(config_path: str | Path, seed: int) -> bool:
    """Whether the run of ``config_path`` for ``seed`` finished (its ``DONE`` marker exists)."""
    return (run_directory(config_path, seed) / "DONE").exists()


def run_or_load(config_path: str | Path, seed: int, *, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run ``config_path`` for ``seed`` unless its run folder is done; return the run's report."""
    path = resolve_path(config_path)
    kind, config = load_experiment(path)
    run = start_run(experiment_name(path), seed, config, force=force)
    if force:  # a forced rerun trains from scratch: no loop may resume an earlier run's state
        for state in sorted(run.directory.rglob(STATE_FILE)):
            state.unlink()
    if not run.done:
        LOGGER.info("running %s (%s) seed %d", path, kind.name, seed)
        run.finish(kind.runner(config, seed, run.directory, progress))
    return run.load_report()


def semantic_id_run(config_path: str | Path, seed: int, *, force: bool = False) -> dict[str, Any]:
    """The report of any SID-producing run (built if missing), its SID metrics at ``metrics``."""
    kind, _ = load_experiment(config_path)
    if kind.semantic_id_metrics is None:
        raise ConfigError(f"{config_path}: a {kind.name!r} run yields no semantic IDs")
    report = run_or_load(config_path, seed, force=force, progress=False)
    return {**report, "metrics": kind.semantic_id_metrics(report)}


def load_tokenizer(directory: str | Path):
    """Load any saved tokenizer through the loader registered for its ``tokenizer.json`` kind."""
    tokenizer_kind = read_tokenizer_json(directory)["kind"]
    if tokenizer_kind not in _TOKENIZER_LOADERS:
        raise ValueError(f"{directory}: no loader for tokenizer kind {tokenizer_kind!r}; known: "
                         f"{sorted(_TOKENIZER_LOADERS)} (baseline tokenizers register when `baselines` is imported)")
    return _TOKENIZER_LOADERS[tokenizer_kind](Path(directory))


def check_all(root: str | Path | None = None) -> list[tuple[Path, str | None]]:
    """Load and validate every YAML under ``root`` (default ``experiments/``): ``[(path, error or None)]``.

    Also checks that every config path a YAML names (``semantic_ids``, ``init_from``) loads.
    """
    root = Path(root) if root is not None else REPOSITORY_ROOT / "experiments"
    results = []
    for path in sorted(root.rglob("*.y*ml")):
        try:
            _, config = load_experiment(path)
            for field in ("semantic_ids", "init_from"):
                upstream = getattr(config, field, None)
                if upstream:
                    load_experiment(upstream)
            results.append((path, None))
        except (ConfigError, ValueError, TypeError, OSError) as error:
            results.append((path, str(error)))
    return results


def _imported_packages() -> set[str]:
    return {name.split(".")[0] for name in sys.modules}


def _finetuned_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """A stage-2 run's SIDs: the re-derived table in ``metrics.finetuned``, lifted to the top."""
    metrics = report["metrics"]
    if "finetuned" not in metrics:
        raise ConfigError(f"{report.get('experiment')}: a downstream run yields SIDs only with finetune: true")
    return {**metrics, **metrics["finetuned"]}


# The method's kinds: MMQ stage 1, the two downstream tasks (each with its stage 2), the image tower.
register(
    ExperimentKind("mmq_tokenizer", mmq_tokenizer.MMQTokenizerConfig, mmq_tokenizer.run,
                   "MMQ stage 1: shared + specific experts -> semantic IDs", semantic_id_metrics=_all_metrics),
    ExperimentKind("ranking", ranking.RankingConfig, ranking.run,
                   "PPNet ranking on frozen or behavior-fine-tuned SIDs (MMQ stage 2)",
                   semantic_id_metrics=_finetuned_metrics),
    ExperimentKind("generative", generative.GenerativeConfig, generative.run,
                   "generative retrieval over SIDs (optionally MMQ stage 2 with the generator)",
                   semantic_id_metrics=_finetuned_metrics),
    ExperimentKind("image_tower", image_tower.ImageTowerExperimentConfig, image_tower.run,
                   "image tower (ClipLoss vs frozen MiniLM): the image-feature encoder"),
)
register_tokenizer_loader(MMQTokenizer.kind, MMQTokenizer.load)

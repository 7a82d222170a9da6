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

import contextlib
import dataclasses
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from mmq import artifacts
from mmq.artifacts import short_hash
from mmq.config import ConfigError, from_dict, read_yaml_mapping, to_dict
from mmq.data.fingerprint import current_fingerprint, recording_datasets
from mmq.data.paths import MissingDataError, data_dir
from mmq.generative import experiment as generative
from mmq.image_tower import experiment as image_tower
from mmq.mmq_tokenizer import experiment as mmq_tokenizer
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
from mmq.ranking import experiment as ranking
from mmq.runs import (REPOSITORY_ROOT, checkpoints_root, experiment_name, recover_interrupted_swap, replace_run_folder,
                      run_lock, staging_folder, start_run)
from mmq.semantic_ids.base import read_tokenizer_json
from mmq.semantic_ids.dedup import sid_table_hash

LOGGER = logging.getLogger(__name__)

KIND_KEY = "kind"
Runner = Callable[[Any, int, Path, bool], dict]  # (config, seed, run directory, progress) -> metrics


def _all_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    return dict(report["metrics"])


class Upstream(NamedTuple):
    """A run another run consumes: the config field naming it, its YAML, and which seed (None: the same)."""

    field: str
    config: str
    seed: int | None = None


class MissingRunsError(RuntimeError):
    """Runs (or their upstream runs) are not finished and training was not allowed."""


class DataChangedError(RuntimeError):
    """A finished run was made on other data than the data directory now holds."""


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
    # the runs this one consumes (their identities are part of its own); [] for none
    upstream: Callable[[Any], list["Upstream"]] = lambda config: []
    typical_minutes: float = 5.0       # rough time of one run on 2 cores, printed before building it
    # files (relative to the run folder) a consumer of this run needs; weights are git-ignored, so a
    # finished run from a fresh clone lacks them and is rebuilt when another run consumes it
    artifacts: Callable[[Any], tuple[str, ...]] = lambda config: ()


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


def run_id(config_path: str | Path) -> str:
    """The identity of a config's runs: a short hash of its kind, resolved config and upstream run identities.

    Any change to the resolved config (a YAML edit, a changed default) or to an upstream run's config
    gives a new identity, hence a new run folder; nothing is reused on a name match alone.
    """
    kind, config = load_experiment(config_path)  # read afresh every time: a YAML edited in-process counts
    upstream = {item.field: [run_id(item.config), item.seed] for item in kind.upstream(config)}
    return short_hash({"kind": kind.name, "config": to_dict(config), "upstream": upstream})


def check_upstream(config_path: str | Path) -> None:
    """Every upstream config loads, and a ``semantic_ids`` upstream is a kind that yields SIDs (before any work)."""
    kind, config = load_experiment(config_path)
    for item in kind.upstream(config):
        upstream_kind, _ = load_experiment(item.config)
        if item.field == "semantic_ids" and upstream_kind.semantic_id_metrics is None:
            raise ConfigError(f"{config_path}: semantic_ids names {item.config}, a {upstream_kind.name!r} run, which "
                              f"yields no semantic IDs")
        check_upstream(item.config)


def run_name(config_path: str | Path) -> str:
    """The run folder name of a config under ``checkpoints/``: its path under experiments/ plus its identity."""
    path = resolve_path(config_path)
    return f"{experiment_name(path)}-{run_id(path)}"


def run_directory(config_path: str | Path, seed: int) -> Path:
    """The run folder of ``config_path`` for ``seed`` (whether or not it exists)."""
    return checkpoints_root() / run_name(config_path) / f"seed{seed}"


def is_done(config_path: str | Path, seed: int) -> bool:
    """Whether the run of ``config_path`` for ``seed`` finished (its ``DONE`` marker exists)."""
    return (run_directory(config_path, seed) / "DONE").exists()


def is_usable(config_path: str | Path, seed: int) -> bool:
    """Done, and the files its consumers read are on this machine (weights and SID tables are git-ignored)."""
    kind, config = load_experiment(config_path)
    directory = run_directory(config_path, seed)
    return (directory / "DONE").exists() and all((directory / name).exists() for name in kind.artifacts(config))


def missing_runs(config_path: str | Path, seed: int, *, consumed: bool = False,
                 include_self: bool = False) -> list[tuple[Path, int, float]]:
    """``(config, seed, estimated minutes)`` of this run (if not finished, or ``include_self``) and of every
    upstream run to build first (not finished, or its artifacts absent), upstream first."""
    path = resolve_path(config_path)
    if not include_self and (is_usable(path, seed) if consumed else is_done(path, seed)):
        return []
    kind, config = load_experiment(path)
    plan: list[tuple[Path, int, float]] = []
    for item in kind.upstream(config):
        for entry in missing_runs(item.config, seed if item.seed is None else item.seed, consumed=True):
            if entry not in plan:
                plan.append(entry)
    return plan + [(path, seed, _estimated_minutes(path, kind))]


def describe_plan(plan: list[tuple[Path, int, float]]) -> str:
    """One line per missing run with its rough time, and the total."""
    lines = [f"  {_relative(path)} seed {seed}: {_duration(minutes)}" for path, seed, minutes in plan]
    return "\n".join(lines + [f"  total {_duration(sum(minutes for *_, minutes in plan))} on 2 cores"])


def _duration(minutes: float) -> str:
    return f"~{minutes * 60:.0f} s" if minutes < 1 else f"~{minutes:.0f} min"


def run_or_load(config_path: str | Path, seed: int, *, force: bool = False, progress: bool = True,
                no_train: bool = False, consumed: bool = False) -> dict[str, Any]:
    """Run ``config_path`` for ``seed`` unless its run folder is done; return the run's report.

    Missing upstream runs are built first (announced with a rough time), or, with ``no_train``, a
    :class:`MissingRunsError` names them. A reused run's recorded dataset fingerprints are checked
    against the data directory. ``force`` retrains in a staging folder that replaces the finished run
    only once it has finished, so a failed forced run leaves the old one intact. ``consumed``: another
    run reads this run's files, so a finished run whose artifacts are absent (a fresh clone) is rebuilt.
    """
    path = resolve_path(config_path)
    kind, config = load_experiment(path)
    check_upstream(path)
    directory = run_directory(path, seed)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if not force and _reusable(path, seed, consumed):  # the common case: read, no lock needed
        return _finished_report(directory)
    with run_lock(directory):  # one process trains a run; a second one waits and then reads it
        recover_interrupted_swap(directory)
        if not force and _reusable(path, seed, consumed):
            return _finished_report(directory)
        force = force or (directory / "DONE").exists()  # a rebuild replaces the old run only once finished
        plan = missing_runs(path, seed, consumed=consumed, include_self=True)
        if no_train:
            raise MissingRunsError(f"{_relative(path)} seed {seed} needs runs that are not finished "
                                   f"(--no-train):\n{describe_plan(plan)}")
        LOGGER.warning("building %d run(s):\n%s", len(plan), describe_plan(plan))
        target = staging_folder(directory) if force else directory
        if force and target.exists():
            shutil.rmtree(target)  # an earlier forced attempt that did not finish: start fresh
        run = start_run(run_name(path), seed, config, directory=target)
        LOGGER.info("running %s (%s) seed %d in %s", _relative(path), kind.name, seed, target)
        with recording_datasets() as datasets:
            metrics = kind.runner(config, seed, target, progress)
        run.finish(metrics, run_id=run_id(path), config_path=str(_relative(path)),
                   upstream={item.field: {"config": item.config, "run_id": run_id(item.config),
                                          "seed": seed if item.seed is None else item.seed}
                             for item in kind.upstream(config)},
                   datasets=datasets)
        if force:
            replace_run_folder(target, directory)
        return artifacts.read_json(directory / "report.json")


def _reusable(path: Path, seed: int, consumed: bool) -> bool:
    """Finished (and, for a consumed run, with its files on this machine)."""
    return is_usable(path, seed) if consumed else is_done(path, seed)


def _finished_report(directory: Path) -> dict[str, Any]:
    """A finished run's report, after checking it was made on the data the data directory holds now."""
    report = artifacts.read_json(directory / "report.json")
    check_datasets(report, directory)
    return report


def check_datasets(report: Mapping[str, Any], directory: Path) -> None:
    """Refuse a finished run whose recorded dataset fingerprints differ from the data now (when it is there)."""
    for key, recorded in report.get("datasets", {}).items():
        current = _current_fingerprint(key)
        if current is not None and current != recorded:
            raise DataChangedError(f"{directory} was made on dataset {key} with fingerprint {recorded}, but the data "
                                   f"directory now gives {current}: restore the data, or rerun with --force")


_FINGERPRINTS: dict[tuple[str, str], str | None] = {}


def fingerprint_cache_key(key: str) -> tuple[str, str]:
    """Where :func:`_current_fingerprint` caches ``key``: per data directory (a process may switch directories)."""
    return str(data_dir()), key


def _current_fingerprint(key: str) -> str | None:
    """The data directory's fingerprint of ``key`` now, cached per process and data directory (None when the data
    is absent)."""
    cache_key = fingerprint_cache_key(key)
    if cache_key not in _FINGERPRINTS:
        try:
            _FINGERPRINTS[cache_key] = current_fingerprint(key)
        except MissingDataError:
            _FINGERPRINTS[cache_key] = None
    return _FINGERPRINTS[cache_key]


def _estimated_minutes(path: Path, kind: ExperimentKind) -> float:
    """Mean time of this experiment's finished runs (any identity, any seed), else the kind's typical time.

    A run's time is the larger of its wall time (its last session only, when it was resumed) and the
    training seconds its metrics add up over all sessions.
    """
    times = []
    for report_path in checkpoints_root().glob(f"{experiment_name(path)}-*/seed*/report.json"):
        report = artifacts.read_json(report_path)
        times.append(max(report.get("wall_time_s", 0.0), _train_seconds(report.get("metrics", {}))) / 60.0)
    times = [value for value in times if value > 0]
    return sum(times) / len(times) if times else kind.typical_minutes


def _train_seconds(metrics: Any) -> float:
    """Sum of every ``train_seconds`` in a report's metrics (nested stages included)."""
    if isinstance(metrics, Mapping):
        return sum(float(value) if key == "train_seconds" and isinstance(value, (int, float)) else _train_seconds(value)
                   for key, value in metrics.items())
    return 0.0


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(REPOSITORY_ROOT)
    except ValueError:
        return path


def semantic_id_run(config_path: str | Path, seed: int, *, force: bool = False) -> dict[str, Any]:
    """The report of any SID-producing run (built if missing), its SID metrics at ``metrics``."""
    kind, _ = load_experiment(config_path)
    if kind.semantic_id_metrics is None:
        raise ConfigError(f"{config_path}: a {kind.name!r} run yields no semantic IDs")
    report = run_or_load(config_path, seed, force=force, progress=False, consumed=True)
    return {**report, "metrics": kind.semantic_id_metrics(report)}


class SemanticIdTable(NamedTuple):
    """A SID run's table, checked against the sha256 its run recorded, with its report and folder."""

    table: Any        # np.ndarray [num_items, code_length (+ de-dup digit)]
    sha256: str
    report: dict[str, Any]
    directory: Path


_ACCEPTED_TABLES: dict[tuple[str, int], str] = {}


@contextlib.contextmanager
def accepting_sid_tables(accepted: Mapping[tuple[str, int], str]):
    """Within the block, :func:`semantic_id_table` also accepts, for run ``(config_path, seed)``, the table with the
    given sha256 when the committed report records another one (a run rebuilt on this machine after its report was
    committed, used only where a downstream report recorded that very table). Never rebuilds anything."""
    keys = {(str(Path(path)), int(seed)): digest for (path, seed), digest in accepted.items()}
    previous = dict(_ACCEPTED_TABLES)
    _ACCEPTED_TABLES.update(keys)
    try:
        yield
    finally:
        _ACCEPTED_TABLES.clear()
        _ACCEPTED_TABLES.update(previous)


def semantic_id_table(config_path: str | Path, seed: int) -> SemanticIdTable:
    """Load the SID table of ``config_path``'s run for ``seed`` (built if missing), refusing a modified table
    (unless :func:`accepting_sid_tables` names exactly that table)."""
    report = semantic_id_run(config_path, seed)
    directory = run_directory(config_path, seed)
    recorded = report["metrics"]["semantic_id_table"]
    table = np.load(directory / recorded["path"])
    digest = sid_table_hash(table)
    if digest != recorded["sha256"] and _ACCEPTED_TABLES.get((str(Path(config_path)), int(seed))) == digest:
        LOGGER.warning("%s: using the local table %s..., not the %s... its committed report records (accepted by "
                       "the caller)", directory, digest[:12], recorded["sha256"][:12])
    elif digest != recorded["sha256"]:
        raise ValueError(f"{directory / recorded['path']} does not match the sha256 its run recorded "
                         f"({digest} vs {recorded['sha256']}): the file was modified; rebuild the run with --force")
    return SemanticIdTable(table, digest, report, directory)


def load_tokenizer(directory: str | Path):
    """Load any saved tokenizer through the loader registered for its ``tokenizer.json`` kind."""
    tokenizer_kind = read_tokenizer_json(directory)["kind"]
    if tokenizer_kind not in _TOKENIZER_LOADERS:
        raise ValueError(f"{directory}: no loader for tokenizer kind {tokenizer_kind!r}; known: "
                         f"{sorted(_TOKENIZER_LOADERS)} (baseline tokenizers register when `baselines` is imported)")
    return _TOKENIZER_LOADERS[tokenizer_kind](Path(directory))


def check_all(root: str | Path | None = None) -> list[tuple[Path, str | None]]:
    """Load and validate every YAML under ``root`` (default ``experiments/``): ``[(path, error or None)]``.

    Also checks every upstream config a YAML names (``semantic_ids``, ``init_from``, the image tower), recursively.
    """
    root = Path(root) if root is not None else REPOSITORY_ROOT / "experiments"
    results = []
    for path in sorted(root.rglob("*.y*ml")):
        try:
            check_upstream(path)
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


def downstream_upstream(config) -> list[Upstream]:
    """A ranking / generative run consumes its SID run (``tokenizer_seed`` or the same seed) and ``init_from``."""
    runs = [Upstream("semantic_ids", config.semantic_ids, config.tokenizer_seed)] if config.semantic_ids else []
    if getattr(config, "init_from", None):
        runs.append(Upstream("init_from", config.init_from))
    return runs


def image_inputs_upstream(config) -> list[Upstream]:
    """A tokenizer reading ``config.inputs`` consumes the image tower run when the inputs include images."""
    inputs = config.inputs
    return [Upstream("inputs.image_tower", inputs.image_tower, inputs.image_tower_seed)] if "image" in inputs.modalities \
        else []


def sid_artifacts(config) -> tuple[str, ...]:
    """What a consumer of a SID run reads: the table, and the tokenizer (for stage 2)."""
    return ("semantic_ids.npy", "tokenizer/tokenizer.json")


def _downstream_artifacts(config) -> tuple[str, ...]:
    return ("best.pt", *(sid_artifacts(config) if config.finetune else ()))


# The method's kinds: MMQ stage 1, the two downstream tasks (each with its stage 2), the image tower.
register(
    ExperimentKind("mmq_tokenizer", mmq_tokenizer.MMQTokenizerConfig, mmq_tokenizer.run,
                   "MMQ stage 1: shared + specific experts -> semantic IDs", semantic_id_metrics=_all_metrics,
                   upstream=image_inputs_upstream, artifacts=sid_artifacts, typical_minutes=4),
    ExperimentKind("ranking", ranking.RankingConfig, ranking.run,
                   "PPNet ranking on frozen or behavior-fine-tuned SIDs (MMQ stage 2)",
                   semantic_id_metrics=_finetuned_metrics, upstream=downstream_upstream,
                   artifacts=_downstream_artifacts, typical_minutes=3),
    ExperimentKind("generative", generative.GenerativeConfig, generative.run,
                   "generative retrieval over SIDs (optionally MMQ stage 2 with the generator)",
                   semantic_id_metrics=_finetuned_metrics, upstream=downstream_upstream,
                   artifacts=_downstream_artifacts, typical_minutes=20),
    ExperimentKind("image_tower", image_tower.ImageTowerExperimentConfig, image_tower.run,
                   "image tower (ClipLoss vs frozen MiniLM): the image-feature encoder",
                   artifacts=lambda config: tuple(f"{stage}/best.pt" for stage in config.stages), typical_minutes=23),
)
register_tokenizer_loader(MMQTokenizer.kind, MMQTokenizer.load)

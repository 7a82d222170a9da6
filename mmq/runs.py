"""One run folder per (experiment, seed): resolved config, environment, metrics, ``DONE`` last.

Layout: ``checkpoints/<experiment path>/seed<k>/report.json`` (+ weights, git-ignored). A stage
whose ``DONE`` marker exists is skipped unless forced, so long tables resume where they stopped.
Which function runs a config is the experiment registry's business (:mod:`mmq.registry`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mmq import artifacts
from mmq.config import to_dict

LOGGER = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def checkpoints_root() -> Path:
    """Root of run folders (``MMQ_CHECKPOINTS`` or ``<repo>/checkpoints``)."""
    return Path(os.environ.get("MMQ_CHECKPOINTS", REPOSITORY_ROOT / "checkpoints"))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (when installed) for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency in practice
        return
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """Current git commit of the repository (with ``-dirty`` when uncommitted changes exist)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def environment_info() -> dict[str, Any]:
    """Device and library versions recorded in every report."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    for distribution in ("numpy", "torch", "faiss-cpu", "sentence-transformers", "transformers", "pandas"):
        try:  # read package metadata instead of importing (importing transformers takes seconds)
            info[f"{distribution}_version"] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        info["device"] = "cpu"
    return info


@dataclasses.dataclass
class Run:
    """A run folder; ``finish`` writes ``report.json`` then ``DONE``."""

    experiment: str
    seed: int
    config: Any
    directory: Path
    started: float = dataclasses.field(default_factory=time.time)

    @property
    def done(self) -> bool:
        """Whether this run finished before (its ``DONE`` marker exists)."""
        return (self.directory / "DONE").exists()

    @property
    def report_path(self) -> Path:
        """Path of ``report.json``."""
        return self.directory / "report.json"

    def finish(self, metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Write the report (config, seed, commit, environment, metrics, wall time), then ``DONE``."""
        report = {
            "experiment": self.experiment,
            "seed": self.seed,
            "config": to_dict(self.config) if dataclasses.is_dataclass(self.config) else self.config,
            "commit": git_commit(),
            "environment": environment_info(),
            "wall_time_s": round(time.time() - self.started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metrics": metrics,
            **extra,
        }
        artifacts.write_json(self.report_path, report)
        artifacts.write_text(self.directory / "DONE", report["finished_at"] + "\n")
        return report

    def load_report(self) -> dict[str, Any]:
        """Read the finished run's report."""
        return artifacts.read_json(self.report_path)


def start_run(experiment: str, seed: int, config: Any, *, root: Path | None = None,
              directory: Path | None = None) -> Run:
    """Create (or reopen) the folder for ``experiment`` and ``seed`` (or the given ``directory``) and seed RNGs.

    A finished run (``DONE``) is never reset here: a forced rerun trains in a staging folder and
    replaces this one only once it has finished (:func:`replace_run_folder`).
    """
    if not experiment or experiment.startswith("/") or ".." in Path(experiment).parts:
        raise ValueError(f"experiment name must be a relative path without '..', got {experiment!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    directory = directory or (root or checkpoints_root()) / experiment / f"seed{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    run = Run(experiment=experiment, seed=seed, config=config, directory=directory)
    seed_everything(seed)
    LOGGER.info("run %s seed %d -> %s%s", experiment, seed, directory, " (done)" if run.done else "")
    return run


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (a sibling ``.lock`` file) so one process at a time works on it.

    A second process running the same config + seed waits here, then finds the first one's finished run.
    """
    lock_path = directory.parent / f"{directory.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            LOGGER.warning("%s is in use by another process; waiting for it", directory)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def staging_folder(directory: Path) -> Path:
    """Where a forced rerun of ``directory`` trains until it has finished."""
    return directory.parent / f"{directory.name}.forcing"


def replace_run_folder(staging: Path, directory: Path) -> None:
    """Swap a finished staging folder in for ``directory`` (the old run survives any failure before this)."""
    if not (staging / "DONE").exists():
        raise RuntimeError(f"{staging} has not finished; {directory} is left as it was")
    retired = directory.parent / f"{directory.name}.replaced"
    if retired.exists():
        shutil.rmtree(retired)
    if directory.exists():
        os.replace(directory, retired)
    os.replace(staging, directory)
    report = directory / "report.json"  # paths recorded while training point into the staging folder
    text = report.read_text(encoding="utf-8")
    if str(staging) in text:
        artifacts.write_text(report, text.replace(str(staging), str(directory)))
    if retired.exists():
        shutil.rmtree(retired)


def recover_interrupted_swap(directory: Path) -> None:
    """If a process died between the two renames of :func:`replace_run_folder`, put the old run back."""
    retired = directory.parent / f"{directory.name}.replaced"
    if retired.exists() and not directory.exists():
        os.replace(retired, directory)


def experiment_name(config_path: str | Path) -> str:
    """Run name derived from a config path: ``experiments/ch1/beauty.yaml`` -> ``ch1/beauty``."""
    path = Path(config_path).resolve()
    experiments_root = REPOSITORY_ROOT / "experiments"
    try:
        relative = path.relative_to(experiments_root)
    except ValueError:
        relative = Path(path.name)
    return str(relative.with_suffix(""))

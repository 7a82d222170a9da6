"""Synthetic inputs the fault cases write for themselves: tiny data folders in every importer's format,
tiny experiment YAMLs, and an in-process probe experiment kind.

Nothing here reads the real data. The tiny SASRec config trains in about a second on the tiny Beauty
folder, long enough (several epochs of ~0.2 s) for a kill to land between two epochs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# --- data folders -------------------------------------------------------------------------------


def write_beauty(root: Path, *, num_users: int = 40, num_items: int = 30, min_length: int = 4, max_length: int = 8,
                 seed: int = 0, empty_titles: int = 0) -> Path:
    """A P5-format Beauty folder (user_sequence.txt, products_lookup.csv, item_id_to_int.json) under ``root``.

    The first ``empty_titles`` items get an empty title. Returns the folder.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "amazon14" / "beauty"
    folder.mkdir(parents=True, exist_ok=True)
    asins = [f"B{index:05d}" for index in range(num_items)]
    lines = []
    for user in range(num_users):
        length = int(rng.integers(min_length, max_length + 1))
        start = int(rng.integers(0, num_items - length + 1))
        lines.append(" ".join([f"U{user}", *asins[start:start + length]]))
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(folder / "products_lookup.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "global_product_id", "name"])
        for index in range(num_items):
            writer.writerow([index, 100 + index, "" if index < empty_titles else f"product {index} shade {index % 7}"])
    (folder / "item_id_to_int.json").write_text(json.dumps({asin: 100 + k for k, asin in enumerate(asins)}, indent=1),
                                                encoding="utf-8")
    return folder


def write_movielens(root: Path, *, num_users: int = 24, num_movies: int = 20, per_user: int = 12, seed: int = 0) -> Path:
    """MovieLens latest-small files (ratings, movies, tags, links) and a posters.zip under ``root``.

    Every user rates ``per_user`` distinct movies, so the default 5-core keeps everything.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "movielens" / "ml-latest-small"
    base.mkdir(parents=True, exist_ok=True)
    movies = ["movieId,title,genres"] + [f"{movie},Movie {movie} ({1990 + movie % 20}),Drama|Comedy"
                                         for movie in range(1, num_movies + 1)]
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, num_users + 1):
        for position, movie in enumerate(rng.choice(np.arange(1, num_movies + 1), per_user, replace=False)):
            ratings.append(f"{user},{movie},{float(rng.integers(1, 11)) / 2},{1_000_000_000 + user * 1000 + position}")
    tags = ["userId,movieId,tag,timestamp", "1,1,classic,1", "2,2,funny,2"]
    links = ["movieId,imdbId,tmdbId"] + [f"{movie},{100000 + movie:07d},{movie}" for movie in range(1, num_movies + 1)]
    for name, lines in (("movies.csv", movies), ("ratings.csv", ratings), ("tags.csv", tags), ("links.csv", links)):
        (base / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_zip(Path(root) / "movielens" / "posters.zip",
              {f"{movie}.jpg": b"\xff\xd8\xff\xe0 poster " + bytes([movie % 256]) * 200
               for movie in range(1, num_movies + 1)})
    return base


def write_raw_amazon(root: Path, *, num_users: int = 20, num_items: int = 12, per_user: int = 6, seed: int = 0) -> Path:
    """Raw Amazon 2014 Beauty files (reviews_Beauty_5.json.gz, meta_Beauty.json.gz) under ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "amazon14_raw"
    folder.mkdir(parents=True, exist_ok=True)
    reviews = []
    for user in range(num_users):
        for position, item in enumerate(rng.choice(num_items, per_user, replace=False)):
            reviews.append(json.dumps({"reviewerID": f"U{user}", "asin": f"A{item:04d}", "overall": 4.0,
                                       "unixReviewTime": 1_400_000_000 + 100 * user + position,
                                       "reviewText": "fine " * 20}))
    meta = [json.dumps({"asin": f"A{item:04d}", "title": f"Item {item}", "description": "text " * 30,
                        "categories": [["Beauty", "Skin"]]}) for item in range(num_items)]
    write_gzip(folder / "reviews_Beauty_5.json.gz", "\n".join(reviews) + "\n")
    write_gzip(folder / "meta_Beauty.json.gz", "\n".join(meta) + "\n")
    return folder


MYNTRA_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def write_myntra(root: Path, *, num_products: int = 12, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Myntra styles.csv.zip + images.zip under ``root``."""
    folder = Path(root) / "myntra"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [MYNTRA_HEADER] + [f"{1000 + k},Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Blue Tee {k}"
                              for k in range(num_products)]
    write_zip(folder / "styles.csv.zip", {"styles.csv": ("\n".join(rows) + "\n").encode()}, compression=compression)
    write_zip(folder / "images.zip", {f"images/{1000 + k}.jpg": b"\xff\xd8jpeg" for k in range(num_products)})
    return folder


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip archive holding ``members``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


def write_gzip(path: Path, text: str) -> Path:
    """A gzip file holding ``text`` (UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def truncate(path: Path, fraction: float) -> int:
    """Cut ``path`` to ``fraction`` of its bytes (a download or copy that stopped); returns the new size."""
    data = path.read_bytes()
    size = int(len(data) * fraction)
    path.write_bytes(data[:size])
    return size


# --- tiny experiment YAMLs ---------------------------------------------------------------------

# SASRec on the tiny Beauty folder: ~0.2 s an epoch with SASREC_DATA below, several epochs.
SASREC_DATA = {"num_users": 1000, "num_items": 150, "min_length": 5, "max_length": 14}
SASREC = {"kind": "sasrec", "dataset": "beauty", "kcore": 0, "max_history": 12, "hidden_size": 16, "num_heads": 2,
          "feedforward_size": 32, "batch_size": 16, "epochs": 5, "eval_every": 1, "patience": 0, "cpu": True}


def write_yaml(path: Path, values: dict[str, Any]) -> Path:
    """A YAML config (JSON is YAML) with ``values``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1) + "\n", encoding="utf-8")
    return path


def sasrec_yaml(path: Path, **overrides: Any) -> Path:
    """The tiny SASRec config (``overrides`` replace fields)."""
    return write_yaml(path, {**SASREC, **overrides})


# --- the probe kind: a registered experiment kind whose runner uses the real training loop ---------


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """A tiny deterministic 'training': ``epochs`` units, each drawing from numpy's global RNG."""

    epochs: int = 3
    rate: float = 1.0


PROBE_KIND = "reliability_probe"
PROBE = {"calls": 0, "units": 0, "fail_at_unit": None}   # runner calls, units trained, unit index that raises


def probe_run(config: ProbeConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """The probe kind's runner: :func:`mmq.training.run_training` over :class:`ProbeTask` units."""
    from mmq.training import LoopSettings, run_training

    PROBE["calls"] += 1
    (directory / "partial.txt").write_text("written before training\n")
    task = _probe_task(config)
    settings = LoopSettings(max_units=config.epochs, eval_every=1, selection_metric="score", description="probe")
    result = run_training(task, settings, directory, seed=seed, progress=False)
    return {"rate": config.rate, "epochs": config.epochs, "weight": task.weight, "best_unit": result.best_unit,
            "units_run": result.units_run, "losses": [record["loss"] for record in result.history]}


def _probe_task(config: ProbeConfig):
    from mmq import artifacts
    from mmq.training import TrainingTask

    class ProbeTask(TrainingTask):
        def __init__(self) -> None:
            self.weight = 0.0

        def train_unit(self, index: int) -> dict[str, Any]:
            if PROBE["fail_at_unit"] == index:
                raise RuntimeError(f"probe: injected failure in unit {index}")
            PROBE["units"] += 1
            self.weight += config.rate * float(np.random.normal())
            return {"loss": round(self.weight, 12)}

        def evaluate(self, index: int) -> dict[str, Any]:
            return {"score": -abs(self.weight)}

        def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
            artifacts.write_json(path, {"weight": self.weight, "unit": number})

        def state_dict(self) -> dict[str, Any]:
            return {"weight": self.weight}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.weight = state["weight"]

    return ProbeTask()


@contextlib.contextmanager
def probe_kind() -> Iterator[dict]:
    """Register the probe kind for the block (counters reset); yields the counters."""
    from mmq import registry

    kind = registry.ExperimentKind(PROBE_KIND, ProbeConfig, probe_run, "fault-matrix probe (not an experiment)")
    added = PROBE_KIND not in registry.kinds()
    registry.register(kind)
    PROBE.update(calls=0, units=0, fail_at_unit=None)
    try:
        yield PROBE
    finally:
        PROBE.update(calls=0, units=0, fail_at_unit=None)
        if added:
            registry._KINDS.pop(PROBE_KIND, None)  # noqa: SLF001  (the registry has no unregister)


def probe_yaml(path: Path, **overrides: Any) -> Path:
    """A probe config."""
    return write_yaml(path, {"kind": PROBE_KIND, **overrides})


@contextlib.contextmanager
def probe_world(box, **overrides: Any) -> Iterator[tuple[dict, Path]]:
    """The probe kind registered and the sandbox ``box`` active for the block, with ``configs/probe.yaml``
    (``overrides``) written; yields (the probe's counters, the YAML's path)."""
    with probe_kind() as probe, box.active():
        yield probe, probe_yaml(box.configs / "probe.yaml", **overrides)


def run_twice(config: Path, probe: dict, *, edit: dict[str, Any] | None = None, force: bool = False
              ) -> tuple[dict, dict, int]:
    """Inside :func:`probe_world`: run ``config`` (seed 0), rewrite its YAML with ``edit`` (when given), run it
    again (``force``d or not); (first report, second report, units the second run trained)."""
    from mmq import registry

    first = registry.run_or_load(config, 0, progress=False)
    if edit is not None:
        probe_yaml(config, **edit)
    probe["units"] = 0
    second = registry.run_or_load(config, 0, force=force, progress=False)
    return first, second, probe["units"]


def fresh_metrics(box, config: Path) -> dict:
    """Inside :func:`probe_world`: the metrics of a fresh run of ``config`` (seed 0) in checkpoints of its own."""
    from mmq import registry

    with box.active(MMQ_CHECKPOINTS=box.root / "fresh"):
        return registry.run_or_load(config, 0, progress=False)["metrics"]


# --- a tiny MMQ world: synthetic ratings + item modalities served to every run (in-process) --------

TINY_MMQ = {"codebook_size": 8, "code_dim": 16, "gate_hidden_dim": 8, "decoder_hidden_dims": [16], "num_steps": 40,
            "batch_size": 32, "restart_every": 10, "progress": False}
TINY_RANKING = {"kind": "ranking", "item_features": "id+sid",
                "ppnet": {"embedding_dim": 8, "sid_embedding_dim": 4, "hidden_dims": [16], "gate_hidden_dim": 8},
                "training": {"max_epochs": 2, "batch_size": 64, "patience": 3}}


def world_data(num_users: int = 40, num_items: int = 60, per_user: int = 30, seed: int = 0):
    """A synthetic ratings dataset and its item modalities ``{"text": [n, 12], "image": [n, 10]}``."""
    import pandas as pd

    from mmq.data.schema import ImportReport, InteractionDataset

    rng = np.random.default_rng(seed)
    data = {"text": rng.normal(size=(num_items, 12)).astype(np.float32),
            "image": rng.normal(size=(num_items, 10)).astype(np.float32)}
    taste = rng.normal(size=(num_users, 12))
    rows = []
    for user in range(num_users):
        for position, item in enumerate(rng.choice(num_items, per_user, replace=False)):
            liked = taste[user] @ data["text"][item] > 0
            rows.append((user, item, 4.5 if liked else 2.0, float(position * 1000 + user * 0.01), position))
    interactions = pd.DataFrame(rows, columns=["user_index", "item_index", "rating", "timestamp", "position"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)], "title": ["t"] * num_items})
    return InteractionDataset("synthetic", items, interactions, ImportReport(dataset="synthetic"), ("title",)), data


@contextlib.contextmanager
def mmq_world(folder: Path) -> Iterator[Path]:
    """Serve a synthetic dataset and modalities to every run for the block; yields a tiny MMQ SID config."""
    import baselines  # noqa: F401  (modules that import load_dataset by name are loaded before patching)
    import mmq.data
    import mmq.data.registry
    import mmq.features.modalities
    import mmq.ranking.experiment  # noqa: F401

    dataset, data = world_data()
    fake_dataset = lambda name, *args, **kwargs: dataset  # noqa: E731
    fake_inputs = lambda config: (data, {"dataset": "synthetic", "num_items": len(data["text"])})  # noqa: E731
    sid_config = write_yaml(folder / "tiny_mmq.yaml", {"kind": "mmq_tokenizer", "mmq": TINY_MMQ})
    with contextlib.ExitStack() as stack:
        from reliability.core import patched_everywhere

        stack.enter_context(patched_everywhere(mmq.data.registry.load_dataset, fake_dataset))
        stack.enter_context(patched_everywhere(mmq.features.modalities.load_item_modalities, fake_inputs))
        yield sid_config

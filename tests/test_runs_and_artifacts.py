"""Run folders (report.json then DONE) and atomic artifact writes."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from mmq import artifacts
from mmq.runs import (experiment_name, recover_interrupted_swap, replace_run_folder, run_lock, staging_folder,
                      start_run)


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    size: int = 3


def test_run_writes_report_then_done(isolated_dirs):
    run = start_run("unit/tiny", 7, TinyConfig())
    assert not run.done
    report = run.finish({"ndcg@10": 0.25})
    assert run.done and (run.directory / "DONE").exists()
    loaded = run.load_report()
    assert loaded == report
    assert loaded["seed"] == 7 and loaded["config"] == {"size": 3}
    assert loaded["metrics"] == {"ndcg@10": 0.25}
    assert {"python", "cpu_count", "device"} <= set(loaded["environment"])
    assert run.directory == isolated_dirs / "checkpoints" / "unit" / "tiny" / "seed7"


def test_a_finished_run_is_never_reset_and_a_staging_folder_replaces_it_only_when_done(isolated_dirs):
    start_run("unit/tiny", 0, TinyConfig()).finish({"v": 1})
    old = start_run("unit/tiny", 0, TinyConfig())
    assert old.done and old.load_report()["metrics"] == {"v": 1}
    staging = staging_folder(old.directory)
    with pytest.raises(RuntimeError, match="has not finished"):
        start_run("unit/tiny", 0, TinyConfig(), directory=staging)
        replace_run_folder(staging, old.directory)
    assert old.load_report()["metrics"] == {"v": 1}  # an unfinished replacement leaves the old run
    start_run("unit/tiny", 0, TinyConfig(), directory=staging).finish({"v": 2, "path": str(staging / "x")})
    replace_run_folder(staging, old.directory)
    report = old.load_report()
    assert report["metrics"] == {"v": 2, "path": str(old.directory / "x")} and not staging.exists()


def test_an_interrupted_swap_is_recovered(isolated_dirs):
    run = start_run("unit/tiny", 0, TinyConfig())
    run.finish({"v": 1})
    retired = run.directory.parent / f"{run.directory.name}.replaced"
    run.directory.rename(retired)  # died between the two renames
    recover_interrupted_swap(run.directory)
    assert run.done and not retired.exists()


def test_run_lock_lets_one_holder_work_at_a_time(isolated_dirs):
    directory = isolated_dirs / "checkpoints" / "unit" / "locked" / "seed0"
    events = []

    def worker(name):
        with run_lock(directory):
            events.append(f"{name} in")
            time.sleep(0.05)
            events.append(f"{name} out")

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events[0].endswith("in") and events[1] == events[0].replace("in", "out")  # never interleaved


def test_seeding_is_reproducible(isolated_dirs):
    start_run("unit/a", 3, TinyConfig())
    first = np.random.rand(4)
    start_run("unit/b", 3, TinyConfig())
    assert np.array_equal(first, np.random.rand(4))


def test_bad_experiment_names_rejected(isolated_dirs):
    for name in ("", "/abs", "../escape"):
        with pytest.raises(ValueError, match="relative path"):
            start_run(name, 0, TinyConfig())


def test_experiment_name_from_config_path():
    from mmq.runs import REPOSITORY_ROOT

    assert experiment_name(REPOSITORY_ROOT / "experiments" / "ch1" / "beauty.yaml") == "ch1/beauty"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "table.md"
    artifacts.write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]  # no temporary left behind


def test_npy_and_json_round_trip(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    artifacts.save_npy(tmp_path / "x.npy", array)
    assert np.array_equal(np.load(tmp_path / "x.npy"), array)
    artifacts.write_json(tmp_path / "x.json", {"n": np.int64(3), "v": np.float32(0.5)})
    assert artifacts.read_json(tmp_path / "x.json") == {"n": 3, "v": 0.5}
    assert artifacts.short_hash("a", 1) == artifacts.short_hash("a", 1) != artifacts.short_hash("a", 2)

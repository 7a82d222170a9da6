"""Run identity categories: ``config edited after a run`` and ``concurrent runs of one config``.

In-process cases use the probe kind (:mod:`reliability.synthetic`); subprocess cases run
``scripts/run.py`` on the tiny SASRec config over a synthetic Beauty folder (helpers in
:mod:`reliability.cases_runs`).
"""

from __future__ import annotations

import json
import time

import numpy as np

from reliability import synthetic
from reliability.cases_runs import (CLI_TIMEOUT, cli, corrupted_files, epochs_trained, sasrec_world, summary_line,
                                    wait_for_state)
from reliability.checks import expect_error, verdict
from reliability.core import (Case, Completed, Outcome, Sandbox, declare, files_under, finished_runs, single_threaded,
                              temporary_files)

EDITED, CONCURRENT = "config edited after a run", "concurrent runs of one config"
CASES: list[Case] = []
edited, concurrent = declare(CASES, EDITED), declare(CASES, CONCURRENT)


@edited("edited_yaml_new_run", "YAML edited after a finished run (same process) -> a new run with the new config, not "
        "the old report", fast=True)
def edited_yaml_new_run(box: Sandbox) -> Outcome:
    """In one process: run, edit rate 1 -> 2 in the YAML, run again -> a new run of the new config."""
    with synthetic.probe_world(box, rate=1.0) as (probe, config):
        _, second, _ = synthetic.run_twice(config, probe, edit={"rate": 2.0})
        calls = probe["calls"]
    rate = second["metrics"]["rate"]
    problems = [] if rate == 2.0 and calls == 2 else [
        f"after the edit run_or_load returned a report with rate {rate} (runner called {calls}x): the old run"]
    return verdict(problems, f"edited YAML gave a new run: rate {rate}, runner called {calls}x")


@edited("edited_yaml_new_run_cli", "learning_rate edited after a finished run.py -> next run.py trains a new run with "
        "the new config", timeout_s=200)
def edited_yaml_cli(box: Sandbox) -> Outcome:
    """run.py, edit learning_rate in the YAML, run.py again -> the second process trains a new run."""
    config = sasrec_world(box, epochs=2)
    first = box.run(cli(box, config), timeout=CLI_TIMEOUT)
    synthetic.sasrec_yaml(config, epochs=2, learning_rate=0.003)
    second = box.run(cli(box, config), timeout=CLI_TIMEOUT)
    problems = [f"{label} run failed: {result.summary()}" for label, result in (("first", first), ("second", second))
                if result.returncode != 0]
    if problems:
        return verdict(problems, "")
    rates = sorted(json.loads((folder / "report.json").read_text())["config"]["learning_rate"]
                   for folder in finished_runs(box.checkpoints))
    trained = epochs_trained(second)
    if trained != 2:
        problems.append(f"the second process trained {trained} epochs (old report returned?)")
    if 0.003 not in rates:
        problems.append(f"no finished run with learning_rate 0.003 (finished: {rates})")
    return verdict(problems, f"second process trained {trained} epochs; finished runs' learning rates {rates}")


@edited("unchanged_yaml_reused", "unchanged YAML -> the finished run is reused, nothing retrained or "
        "rewritten", fast=True)
def unchanged_yaml_reused(box: Sandbox) -> Outcome:
    from mmq import registry

    with synthetic.probe_world(box) as (probe, config):
        first = registry.run_or_load(config, 0, progress=False)
        snapshot = files_under(box.checkpoints)
        stamps = {path: path.stat().st_mtime_ns for path in box.checkpoints.rglob("*") if path.is_file()}
        second = registry.run_or_load(config, 0, progress=False)
        calls = probe["calls"]
    problems = [] if calls == 1 else [f"runner called {calls}x"]
    if second != first:
        problems.append("another report returned")
    if files_under(box.checkpoints) != snapshot or any(path.stat().st_mtime_ns != stamp for path, stamp in stamps.items()):
        problems.append("run folder files rewritten")
    return verdict(problems, "finished run reused: runner called once, report identical, no file rewritten")


@edited("sid_table_modified_refused", "upstream semantic_ids.npy rows permuted -> frozen-SID ranking run refused, "
        "sha256 mismatch named", fast=True, timeout_s=120)
def sid_table_modified(box: Sandbox) -> Outcome:
    """A frozen-SID ranking run whose upstream semantic_ids.npy was permuted after the SID run finished."""
    from mmq import registry

    with box.active(), single_threaded(), synthetic.mmq_world(box.configs) as sid_config:
        ranking = synthetic.write_yaml(box.configs / "rank_frozen.yaml",
                                       {**synthetic.TINY_RANKING, "semantic_ids": str(sid_config)})
        registry.run_or_load(sid_config, 0, progress=False)
        table_path = next(box.checkpoints.rglob("semantic_ids.npy"))
        table = np.load(table_path)
        permuted = table[np.random.default_rng(0).permutation(len(table))]
        np.save(table_path, permuted)
        return expect_error(lambda: registry.run_or_load(ranking, 0, progress=False), names=["sha256"],
                            also=lambda: "the ranking run finished on the modified table"
                            if any("rank_frozen" in str(folder) for folder in finished_runs(box.checkpoints)) else None)


# --- concurrent runs of one config -------------------------------------------------------------------


def _concurrent_outcome(box: Sandbox, results: list[Completed], *, expect_trainers: int) -> list[str]:
    problems = [f"process {index} {result.summary()}" for index, result in enumerate(results) if result.returncode != 0]
    trainers = sum(epochs_trained(result) > 0 for result in results)
    if trainers != expect_trainers:
        problems.append(f"{trainers} processes trained (expected {expect_trainers})")
    problems += [f"corrupted {name}" for name in corrupted_files(box.checkpoints)]
    strays = temporary_files(box.checkpoints)
    if strays:
        problems.append(f"temp files left: {strays[:2]}")
    return problems


@concurrent("concurrent_same_config_seed", "two run.py on one config+seed at once -> exactly one trains, both end with "
            "the same report, no corrupted files", timeout_s=300)
def concurrent_same_run(box: Sandbox) -> Outcome:
    """Two run.py processes on the same config + seed at once: one trains, both print the same finished report."""
    config = sasrec_world(box)
    started = time.monotonic()
    processes = [box.popen(cli(box, config), log=f"concurrent-{index}") for index in range(2)]
    results = [box.finish(process, 2 * CLI_TIMEOUT, started) for process in processes]
    problems = _concurrent_outcome(box, results, expect_trainers=1)
    summaries = [summary_line(result) for result in results]
    if summaries[0] is None or summaries[0] != summaries[1]:
        problems.append("the two processes printed different summaries")
    if len(finished_runs(box.checkpoints)) != 1:
        problems.append(f"{len(finished_runs(box.checkpoints))} finished run folders")
    return verdict(problems, "both exit 0; one trained, the other waited and read the same finished report; "
                             "no corrupted or temp files")


@concurrent("concurrent_staggered_start", "second run.py started mid-training -> waits, does not retrain, same "
            "report", timeout_s=300)
def concurrent_staggered(box: Sandbox) -> Outcome:
    """A second run.py started while the first is mid-training (after its first state.pt) must not retrain."""
    config = sasrec_world(box, epochs=6)
    started = time.monotonic()
    first = box.popen(cli(box, config), log="first")
    state = wait_for_state(box.checkpoints, first)
    if state is None:
        return Outcome(False, f"first run wrote no state.pt ({box.finish(first, CLI_TIMEOUT, started).summary()})")
    second = box.popen(cli(box, config), log="second")
    results = [box.finish(first, 2 * CLI_TIMEOUT, started), box.finish(second, 2 * CLI_TIMEOUT, started)]
    problems = _concurrent_outcome(box, results, expect_trainers=1)
    if summary_line(results[0]) != summary_line(results[1]):
        problems.append("the two processes printed different summaries")
    return verdict(problems, "second process (started mid-training) waited and read the first one's report")


@concurrent("concurrent_two_seeds", "seeds 0 and 1 in two processes at once -> both train, two finished "
            "runs", timeout_s=300)
def concurrent_two_seeds(box: Sandbox) -> Outcome:
    """Seeds 0 and 1 of one config in two processes at once: both train, two finished runs, nothing shared."""
    config = sasrec_world(box, epochs=3)
    started = time.monotonic()
    processes = [box.popen(cli(box, config, seed=seed), log=f"seed-{seed}") for seed in (0, 1)]
    results = [box.finish(process, 2 * CLI_TIMEOUT, started) for process in processes]
    problems = _concurrent_outcome(box, results, expect_trainers=2)
    seeds = sorted(folder.name for folder in finished_runs(box.checkpoints))
    if seeds != ["seed0", "seed1"]:
        problems.append(f"finished run folders {seeds}")
    return verdict(problems, "both seeds trained at once and finished in their own folders")

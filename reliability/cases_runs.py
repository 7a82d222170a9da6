"""Run lifecycle categories ``interrupt / resume`` and ``--force``, and the helpers every subprocess case
shares (the identity categories are in :mod:`reliability.cases_identity`).

In-process cases use the probe kind (:mod:`reliability.synthetic`: the real registry, run folders
and training loop around a trivial task). Subprocess cases run ``scripts/run.py`` on the tiny SASRec
config over a synthetic Beauty folder; a kill is sent the moment the first ``state.pt`` appears.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from reliability import synthetic
from reliability.checks import expect_error, first_difference, verdict, without_timings
from reliability.core import (Case, Completed, Outcome, Sandbox, declare, describe, finished_runs, kill_group,
                              one_line, run_folders, temporary_files)

INTERRUPT, FORCE = "interrupt / resume", "--force"
CASES: list[Case] = []
interrupt, force = declare(CASES, INTERRUPT), declare(CASES, FORCE)
TRAINING_LINE = "mmq.training.loop: sasrec "   # the loop logs one line per epoch trained in this process
CLI_TIMEOUT = 120.0


# --- helpers ------------------------------------------------------------------------------------


def sasrec_world(box: Sandbox, **overrides) -> Path:
    """The synthetic Beauty folder and the tiny SASRec YAML (``overrides`` replace config fields)."""
    if not (box.data / "amazon14/beauty/user_sequence.txt").exists():
        synthetic.write_beauty(box.data, **synthetic.SASREC_DATA)
    return synthetic.sasrec_yaml(box.configs / "tiny_sasrec.yaml", **overrides)


def cli(box: Sandbox, config: Path, *extra: str, seed: int = 0) -> list[str]:
    """The command line of ``scripts/run.py config --seeds seed --no-progress extra...``."""
    return box.script("run", config, "--seeds", str(seed), "--no-progress", *extra)


def epochs_trained(result: Completed) -> int:
    """Epochs a CLI process trained itself (from its log)."""
    return result.stderr.count(TRAINING_LINE)


def summary_line(result: Completed) -> dict | None:
    """The JSON summary a successful ``run.py`` prints last."""
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def the_report(root: Path, seed: int = 0) -> dict | None:
    """The report of the single finished run for ``seed`` under a checkpoints root (None if none)."""
    folders = [folder for folder in finished_runs(root) if folder.name == f"seed{seed}"]
    if len(folders) != 1:
        return None
    return json.loads((folders[0] / "report.json").read_text())


def wait_for_state(root: Path, process, *, newer_than: float = 0.0, timeout: float = CLI_TIMEOUT) -> Path | None:
    """Poll (5 ms) until a ``state.pt`` newer than ``newer_than`` appears under ``root``; None if the process ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if root.exists():
            for path in root.rglob("state.pt"):
                try:
                    if path.stat().st_mtime > newer_than:
                        return path
                except FileNotFoundError:
                    continue
        if process.poll() is not None:
            return None
        time.sleep(0.005)
    return None


def kill_after_first_state(box: Sandbox, command: list[str], root: Path, *, newer_than: float = 0.0
                           ) -> tuple[Path | None, Completed]:
    """Start ``command``; SIGKILL its process group as soon as a (new) ``state.pt`` exists under ``root``."""
    started = time.monotonic()
    process = box.popen(command)
    state = wait_for_state(root, process, newer_than=newer_than)
    if state is not None:
        kill_group(process, signal.SIGKILL)
    return state, box.finish(process, CLI_TIMEOUT, started)


def state_units(path: Path) -> int | None:
    """Units recorded in a training ``state.pt`` (None if unreadable)."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["loop"]["units"])
    except Exception:  # noqa: BLE001
        return None


def same_weights(left: Path, right: Path) -> str | None:
    """None when two ``best.pt`` files hold bit-identical tensors, else where they differ."""
    import torch

    first = torch.load(left, map_location="cpu", weights_only=True)["model"]
    second = torch.load(right, map_location="cpu", weights_only=True)["model"]
    if first.keys() != second.keys():
        return "best.pt keys differ"
    for key in first:
        if not torch.equal(first[key], second[key]):
            return f"best.pt tensor {key} differs"
    return None


def corrupted_files(root: Path) -> list[str]:
    """JSON files that do not parse and .pt files that do not load under ``root``."""
    import torch

    bad = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".pt":
                torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001
            bad.append(f"{path.name}: {describe(error)}")
    return bad


# --- interrupt / resume ----------------------------------------------------------------------------


@interrupt("resume_after_sigkill_bit_identical", "SIGKILL after epoch 1's state.pt, rerun -> resumes, metrics and "
           "best.pt bit-identical to an uninterrupted run", timeout_s=240)
def sigkill_resume(box: Sandbox) -> Outcome:
    """A SASRec run SIGKILLed right after its first state.pt, rerun: the same metrics and weights, bit for bit."""
    config = sasrec_world(box, epochs=6)
    reference_root = box.root / "reference"
    reference = box.run(cli(box, config), timeout=CLI_TIMEOUT, env=box.environment(MMQ_CHECKPOINTS=reference_root))
    if reference.returncode != 0:
        return Outcome(False, f"uninterrupted run failed: {reference.summary()}")
    state, killed = kill_after_first_state(box, cli(box, config), box.checkpoints)
    if state is None:
        return Outcome(False, f"no state.pt before the process ended ({killed.summary()}): the kill did not land")
    problems = []
    units = state_units(state)
    if killed.returncode != -signal.SIGKILL:
        problems.append(f"killed run rc={killed.returncode}")
    if (state.parent / "DONE").exists() or (state.parent / "report.json").exists():
        problems.append("DONE/report.json exist after the kill")
    rerun = box.run(cli(box, config), timeout=CLI_TIMEOUT)
    if rerun.returncode != 0:
        return Outcome(False, f"rerun failed: {rerun.summary()}")
    first, resumed = the_report(reference_root), the_report(box.checkpoints)
    if first is None or resumed is None:
        return Outcome(False, "a finished report is missing")
    difference = first_difference(without_timings(first["metrics"]), without_timings(resumed["metrics"]))
    if difference:
        problems.append(f"metrics differ at {difference}")
    weights = same_weights(finished_runs(reference_root)[0] / "best.pt", finished_runs(box.checkpoints)[0] / "best.pt")
    if weights:
        problems.append(weights)
    trained = epochs_trained(rerun)
    if units is None or trained != 6 - units:
        problems.append(f"state.pt at kill had {units} epoch(s) but the rerun trained {trained} (not a resume)")
    return verdict(problems, f"killed after epoch {units} (rc -9, no DONE); rerun trained {trained} more epochs; "
                             "metrics (timings aside) and best.pt bit-identical to the uninterrupted run")


DYING_WRITER = r"""
import os, pathlib, signal, sys
import numpy as np
from mmq import artifacts
from mmq.semantic_ids.base import save_torch_state

kind, path = sys.argv[1], pathlib.Path(sys.argv[2])

def die_half_way(handle_or_path, data):
    # write half of the bytes, make them durable, then the process is killed (SIGKILL, no cleanup)
    if isinstance(handle_or_path, (str, os.PathLike)):
        handle = open(handle_or_path, "wb")
    else:
        handle = handle_or_path
    handle.write(data[: len(data) // 2])
    handle.flush()
    os.fsync(handle.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

if kind == "npy":
    artifacts.save_npy(path, np.arange(1000, dtype=np.int64))
    np.save = lambda handle, array, allow_pickle=False: die_half_way(handle, array.tobytes())
    artifacts.save_npy(path, np.arange(10 ** 6, dtype=np.int64))
elif kind == "json":
    artifacts.write_json(path, {"version": "old"})
    pathlib.Path.write_text = lambda self, text, encoding=None: die_half_way(self, text.encode())
    artifacts.write_json(path, {"version": "new", "payload": list(range(100000))})
else:
    import torch
    save_torch_state(path, {"version": torch.tensor([1])})
    pathlib.Path.write_bytes = lambda self, data: die_half_way(self, data)
    save_torch_state(path, {"version": torch.tensor([2]), "payload": torch.zeros(100000)})
print("not killed")
"""


@interrupt("kill_while_writing_artifact", "SIGKILL half-way through writing .npy / report.json / state.pt -> each "
           "target still the previous complete file", timeout_s=90)
def killed_while_writing(box: Sandbox) -> Outcome:
    """A process SIGKILLed half-way through writing a .npy, a report.json and a state.pt (the real writers)."""
    problems, notes = [], []
    for kind, name in (("npy", "semantic_ids.npy"), ("json", "report.json"), ("pt", "state.pt")):
        folder = box.root / f"kill-{kind}"
        path = folder / name
        result = box.run([sys.executable, "-c", DYING_WRITER, kind, str(path)], timeout=60)
        if result.returncode != -signal.SIGKILL:
            problems.append(f"{name}: writer rc={result.returncode} ({one_line(result.stderr[-200:], 80)})")
            continue
        try:
            if kind == "npy":
                intact = np.array_equal(np.load(path), np.arange(1000))
            elif kind == "json":
                intact = json.loads(path.read_text()) == {"version": "old"}
            else:
                import torch

                intact = int(torch.load(path, weights_only=True)["version"]) == 1
        except Exception as error:  # noqa: BLE001
            intact = False
            notes.append(f"{name}: {describe(error)}")
        if not intact:
            problems.append(f"{name} is not the previous complete file")
        strays = temporary_files(folder)
        if strays:
            notes.append(f"{len(strays)} hidden {name} temp file left (never read)")
    return verdict(problems, "each target still the previous complete file after SIGKILL mid-write"
                   + (f"; {', '.join(notes)}" if notes else ""))


@interrupt("crash_leaves_no_done", "runner raises mid-run -> no DONE, no report.json; rerun resumes and equals a fresh "
           "run", fast=True)
def crash_leaves_no_done(box: Sandbox) -> Outcome:
    """A run whose runner raises in unit 2: no DONE, no report; the rerun resumes and equals a fresh run."""
    from mmq import registry

    with synthetic.probe_world(box, epochs=4) as (probe, config):
        probe["fail_at_unit"] = 1
        outcome = expect_error(lambda: registry.run_or_load(config, 0, progress=False), types=(RuntimeError,),
                               names=["injected failure"])
        problems = [] if outcome.ok else [outcome.observed]
        folders = run_folders(box.checkpoints, 0)
        if any((folder / "DONE").exists() or (folder / "report.json").exists() for folder in folders):
            problems.append("DONE or report.json written by the failed run")
        probe.update(fail_at_unit=None, units=0)
        resumed = registry.run_or_load(config, 0, progress=False)["metrics"]
        units_after = probe["units"]
        fresh = synthetic.fresh_metrics(box, config)
    if resumed != fresh:
        problems.append(f"resumed metrics differ from a fresh run at {first_difference(resumed, fresh)}")
    if units_after != 3:
        problems.append(f"rerun trained {units_after} units (expected 3: resume after unit 1)")
    return verdict(problems, f"{outcome.observed}; no DONE/report; rerun trained 3 more units and equals a fresh run")


# --- --force ----------------------------------------------------------------------------------------


@force("force_edited_matches_fresh", "--force after a YAML edit -> retrained from scratch, equal to a fresh run of the "
       "new config", fast=True)
def force_edited_matches_fresh(box: Sandbox) -> Outcome:
    """--force after editing the YAML (epochs 3 -> 4, rate 1 -> 2) equals a fresh run of the new config."""
    with synthetic.probe_world(box, epochs=3, rate=1.0) as (probe, config):
        _, forced, units = synthetic.run_twice(config, probe, edit={"epochs": 4, "rate": 2.0}, force=True)
        forced, fresh = forced["metrics"], synthetic.fresh_metrics(box, config)
    problems = [] if forced == fresh else [f"forced != fresh at {first_difference(forced, fresh)}"]
    if units != 4:
        problems.append(f"the forced run trained {units} units, not 4")
    return verdict(problems, f"forced run trained {units} units; metrics equal a fresh run of the edited config")


@force("force_unchanged_retrains", "--force on an unchanged finished run -> every epoch retrained (not a 0-epoch "
       "resume), a new report", fast=True)
def force_unchanged_retrains(box: Sandbox) -> Outcome:
    """--force on a finished, unchanged config trains every unit again (no 0-unit resume of the old state)."""
    with synthetic.probe_world(box, epochs=3) as (probe, config):
        first, forced, units = synthetic.run_twice(config, probe, force=True)
    problems = [] if units == 3 else [f"forced run trained {units} of 3 units"]
    if forced["metrics"] != first["metrics"]:
        problems.append(f"metrics differ at {first_difference(first['metrics'], forced['metrics'])}")
    return verdict(problems, f"forced run trained {units}/3 units; same metrics, a new report")


@force("force_failure_keeps_previous", "--force that fails part-way -> previous report.json + DONE intact and still "
       "reused", fast=True)
def force_failure_keeps_previous(box: Sandbox) -> Outcome:
    """A forced rerun that raises part-way leaves the finished run (report.json + DONE) intact and readable."""
    from mmq import registry

    with synthetic.probe_world(box, epochs=3) as (probe, config):
        first = registry.run_or_load(config, 0, progress=False)
        folder = next(folder for folder in finished_runs(box.checkpoints))
        before = {name: (folder / name).read_bytes() for name in ("report.json", "DONE")}
        probe["fail_at_unit"] = 1
        outcome = expect_error(lambda: registry.run_or_load(config, 0, force=True, progress=False),
                               types=(RuntimeError,), names=["injected failure"])
        probe["fail_at_unit"] = None
        problems = [] if outcome.ok else [outcome.observed]
        for name, data in before.items():
            if not (folder / name).exists():
                problems.append(f"{name} deleted")
            elif (folder / name).read_bytes() != data:
                problems.append(f"{name} changed")
        calls = probe["calls"]
        try:
            again = registry.run_or_load(config, 0, progress=False)
            if again != first:
                problems.append("a later plain run returned another report")
            if probe["calls"] != calls:
                problems.append("a later plain run retrained instead of reading the finished run")
        except Exception as error:  # noqa: BLE001
            problems.append(f"a later plain run raised {describe(error)}")
    return verdict(problems, f"forced rerun failed ({outcome.observed}); report.json + DONE unchanged and reused")


@force("force_killed_keeps_previous", "run.py --force SIGKILLed mid-training -> previous report.json, DONE, best.pt "
       "intact; plain rerun reuses them", timeout_s=240)
def force_killed_keeps_previous(box: Sandbox) -> Outcome:
    """run.py --force SIGKILLed after its first state.pt: the finished run survives and is reused untouched."""
    config = sasrec_world(box)
    first = box.run(cli(box, config), timeout=CLI_TIMEOUT)
    if first.returncode != 0:
        return Outcome(False, f"first run failed: {first.summary()}")
    folder = finished_runs(box.checkpoints)[0]
    before = {name: (folder / name).read_bytes() for name in ("report.json", "DONE", "best.pt")}
    started = time.time()
    state, killed = kill_after_first_state(box, cli(box, config, "--force"), box.checkpoints, newer_than=started)
    if state is None:
        return Outcome(False, f"the forced run wrote no state.pt before ending ({killed.summary()})")
    problems = [f"{name} {'deleted' if not (folder / name).exists() else 'changed'}"
                for name, data in before.items() if not (folder / name).exists() or (folder / name).read_bytes() != data]
    again = box.run(cli(box, config), timeout=CLI_TIMEOUT)
    if again.returncode != 0:
        problems.append(f"plain rerun failed: {again.summary()}")
    elif epochs_trained(again):
        problems.append(f"plain rerun trained {epochs_trained(again)} epochs instead of reusing the finished run")
    elif summary_line(again) != summary_line(first):
        problems.append("plain rerun printed another summary")
    return verdict(problems, f"--force killed after its first state.pt ({state.parent.name}); report.json, DONE, "
                             "best.pt unchanged; plain rerun reused them")

"""Category ``read-only and full disk``: a read-only checkpoint folder and a full disk, on real file systems.

Faults are real: a tmpfs mounted inside the sandbox (root can mount here and in CI), remounted
read-only, or filled to the last block. Where mounting is impossible, a case falls back to an
in-process simulation (the writers' ``os``/``io`` calls patched to raise EROFS / ENOSPC for paths in
the folder) and says ``simulated`` in its observed column.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from reliability.cases_config import call_main
from reliability.cases_runs import CLI_TIMEOUT, cli, epochs_trained, sasrec_world, summary_line
from reliability.checks import verdict
from reliability.core import (Case, Completed, Outcome, Sandbox, declare, describe, files_under, last_line,
                              one_line, temporary_files)

CATEGORY = "read-only and full disk"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)


@contextlib.contextmanager
def simulated_fault(root: Path, code: int) -> Iterator[None]:
    """Make writes under ``root`` fail with ``code`` (EROFS / ENOSPC) in this process (the fallback)."""
    root = Path(root).resolve()

    def inside(path) -> bool:
        try:
            return root == Path(os.fsdecode(path)).resolve() or root in Path(os.fsdecode(path)).resolve().parents
        except (TypeError, ValueError):
            return False

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_os_open, real_mkdir, real_replace = builtins.open, os.open, os.mkdir, os.replace
    real_mkstemp = tempfile.mkstemp

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(flag in mode for flag in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path) and not Path(os.fsdecode(path)).exists():
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(source, target, *args, **kwargs):
        if inside(target):
            refuse(target)
        return real_replace(source, target, *args, **kwargs)

    def fake_mkstemp(*args, dir=None, **kwargs):  # noqa: A002
        if dir is not None and inside(dir):
            refuse(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    patches = [(builtins, "open", fake_open), (io, "open", fake_open), (os, "open", fake_os_open),
               (os, "mkdir", fake_mkdir), (os, "replace", fake_replace), (tempfile, "mkstemp", fake_mkstemp)]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in originals:
            setattr(module, name, value)


def in_process(box: Sandbox, arguments: list[str], **env) -> Completed:
    """``scripts/run.py`` run in this process (the fallback when no tmpfs can be mounted)."""
    with box.active(**env):
        try:
            code, stdout, stderr = call_main(arguments)
        except Exception as error:  # noqa: BLE001  (an uncaught error: what the CLI would print last)
            code, stdout, stderr = 1, "", f"{type(error).__name__}: {error}"
    return Completed(code, stdout, stderr, 0.0)


def fill(folder: Path) -> None:
    """Fill the file system holding ``folder`` to its last block (unbuffered: nothing left to flush)."""
    block = b"\0" * 4096
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while handle.write(block):
                pass
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise


def run_cli(box: Sandbox, config: Path, checkpoints: Path, *, simulated: bool, fault: int | None = None) -> Completed:
    """run.py on ``config`` (seed 0) with MMQ_CHECKPOINTS=``checkpoints``: a subprocess when the fault is real, else
    in this process (under a simulated ``fault`` errno for paths in ``checkpoints``, when given)."""
    if not simulated:
        return box.run(cli(box, config), timeout=CLI_TIMEOUT, env=box.environment(MMQ_CHECKPOINTS=checkpoints))
    with simulated_fault(checkpoints, fault) if fault is not None else contextlib.nullcontext():
        return in_process(box, [str(config), "--seeds", "0", "--no-progress"], MMQ_CHECKPOINTS=checkpoints)


def run_read_only(box: Sandbox, config: Path, checkpoints: Path, *, simulated: bool) -> tuple[Completed, bool]:
    """run.py on ``config`` once ``checkpoints`` is read-only (remounted, or a simulated EROFS): its result and
    whether any file under ``checkpoints`` changed."""
    before = files_under(checkpoints)
    if not simulated:
        box.remount_read_only(checkpoints)
    result = run_cli(box, config, checkpoints, simulated=simulated, fault=errno.EROFS)
    return result, files_under(checkpoints) != before


def _fake_finished_run(root: Path) -> None:
    """An earlier finished run (another experiment) under ``root``."""
    folder = root / "earlier-0123456789ab" / "seed0"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({"experiment": "earlier", "metrics": {"auc": 0.7}}) + "\n")
    (folder / "DONE").write_text("2026-01-01T00:00:00Z\n")


@case("readonly_checkpoints", "checkpoint dir read-only -> non-zero exit, error line names the path and 'read-only', "
      "earlier outputs unchanged", timeout_s=120)
def read_only_checkpoints(box: Sandbox) -> Outcome:
    """MMQ_CHECKPOINTS on a read-only tmpfs holding an earlier finished run; run.py on a new config."""
    config = sasrec_world(box)
    checkpoints = box.root / "ro-checkpoints"
    simulated = box.tmpfs_or_folder(checkpoints, "4m")
    _fake_finished_run(checkpoints)
    result, changed = run_read_only(box, config, checkpoints, simulated=simulated)
    line = last_line(result.stderr)
    problems = [] if result.returncode != 0 else ["exit code 0"]
    if str(checkpoints) not in line:
        problems.append(f"the error line does not name {checkpoints.name}: {one_line(line, 100)!r}")
    if "read-only" not in line.lower():
        problems.append("the error line does not say read-only")
    if changed:
        problems.append("earlier outputs changed")
    return verdict(problems, ("simulated (no tmpfs): " if simulated else "") +
                   f"rc={result.returncode}: {one_line(line, 130)}; earlier outputs unchanged")


@case("readonly_finished_run_readable", "finished run in a read-only checkpoint dir -> still read (exit 0, no "
      "training, nothing written)", timeout_s=120)
def read_only_finished_run(box: Sandbox) -> Outcome:
    """A finished run on a checkpoint folder that became read-only is still read (exit 0, no training)."""
    config = sasrec_world(box, epochs=2)
    checkpoints = box.root / "ro-finished"
    simulated = box.tmpfs_or_folder(checkpoints, "8m")
    with box.active(MMQ_CHECKPOINTS=checkpoints):
        import baselines  # noqa: F401  (registers the sasrec kind)
        from mmq import registry

        registry.run_or_load(config, 0, progress=False)
    result, changed = run_read_only(box, config, checkpoints, simulated=simulated)
    problems = [] if result.returncode == 0 else [result.summary()]
    if result.returncode == 0 and (summary_line(result) is None or epochs_trained(result)):
        problems.append("no summary printed or training happened")
    if changed:
        problems.append("files changed")
    return verdict(problems, ("simulated (no tmpfs): " if simulated else "") +
                   "finished run read from a read-only folder: exit 0, summary printed, nothing written")


def _full_disk(box: Sandbox, name: str, write_old, write_new, read) -> Outcome:
    folder = box.root / "full"
    simulated = box.tmpfs_or_folder(folder, "256k")
    path = folder / name
    write_old(path)
    old = path.read_bytes()
    if not simulated:
        fill(folder)
    context = simulated_fault(folder, errno.ENOSPC) if simulated else contextlib.nullcontext()
    error = None
    try:
        with context:
            write_new(path)
    except OSError as raised:
        error = raised
    problems = []
    if error is None:
        problems.append("no error raised")
    elif error.errno != errno.ENOSPC:
        problems.append(f"not ENOSPC: {describe(error)}")
    elif name not in str(error) and not simulated:  # a simulated error's text is ours: not checked
        problems.append(f"the error does not name {name} ({describe(error)})")
    if path.read_bytes() != old:
        problems.append(f"{name} changed")
    else:
        read(path)
    strays = temporary_files(folder)
    if strays:
        problems.append(f"temp files left: {strays}")
    return verdict(problems, ("simulated (no tmpfs): " if simulated else "") +
                   f"{describe(error) if error else ''}; previous {name} intact, no temp file left")


@case("full_disk_report_json", "disk full while writing report.json -> ENOSPC error naming the file, previous file "
      "intact, no temp file left", timeout_s=60)
def full_disk_report(box: Sandbox) -> Outcome:
    from mmq import artifacts

    return _full_disk(box, "report.json", lambda path: artifacts.write_json(path, {"metrics": {"auc": 0.7}}),
                      lambda path: artifacts.write_json(path, {"metrics": {"history": list(range(200000))}}),
                      artifacts.read_json)


@case("full_disk_npy", "disk full while writing a .npy -> ENOSPC error naming the file, previous file intact, no temp "
      "file left", timeout_s=60)
def full_disk_npy(box: Sandbox) -> Outcome:
    from mmq import artifacts

    return _full_disk(box, "semantic_ids.npy", lambda path: artifacts.save_npy(path, np.arange(100, dtype=np.int64)),
                      lambda path: artifacts.save_npy(path, np.zeros((50000, 7), dtype=np.int64)), np.load)


@case("full_disk_during_run", "disk full during run.py (state.pt) -> non-zero exit, error line 'No space left' naming "
      "the path; no temp files / DONE; earlier run intact; rerun after freeing space finishes", timeout_s=200)
def full_disk_during_run(box: Sandbox) -> Outcome:
    """run.py with MMQ_CHECKPOINTS on a 64 KB tmpfs: state.pt does not fit -> clear error, no temp files,
    no DONE, an earlier run untouched; after the disk is enlarged the same command finishes."""
    config = sasrec_world(box, epochs=2)
    checkpoints = box.root / "small-checkpoints"
    simulated = box.tmpfs_or_folder(checkpoints, "64k")
    _fake_finished_run(checkpoints)
    earlier = files_under(checkpoints / "earlier-0123456789ab")
    result = run_cli(box, config, checkpoints, simulated=simulated, fault=errno.ENOSPC)
    line = last_line(result.stderr)
    problems = [] if result.returncode != 0 else ["exit code 0 on a full disk"]
    if "No space left" not in line:
        problems.append(f"the error line does not say 'No space left': {one_line(line, 90)!r}")
    elif str(checkpoints) not in line and not simulated:  # a simulated error's text is ours: not checked
        problems.append(f"the error line does not name the file or folder under {checkpoints.name}: "
                        f"{one_line(line, 90)!r}")
    strays = temporary_files(checkpoints)
    if strays:
        problems.append(f"temp files left: {strays[:2]}")
    if any(path.parent.name == "seed0" and "earlier" not in str(path) for path in checkpoints.rglob("DONE")):
        problems.append("DONE written")
    if files_under(checkpoints / "earlier-0123456789ab") != earlier:
        problems.append("the earlier run changed")
    if not simulated:
        box.resize_tmpfs(checkpoints, "8m")
    again = run_cli(box, config, checkpoints, simulated=simulated)
    if again.returncode != 0:
        problems.append(f"rerun after freeing space failed: {again.summary()}")
    return verdict(problems, ("simulated (no tmpfs): " if simulated else "") + f"rc={result.returncode}: "
                   f"{one_line(line, 110)}; no temp/DONE left; rerun after freeing space finished")

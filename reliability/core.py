"""The pieces every fault-injection case uses: the case record, its outcome, and an isolated sandbox.

A :class:`Case` is data: a name, a category, the contract in one line (``expected``) and a check
function ``check(sandbox) -> Outcome``. The check builds whatever it needs (synthetic data, tiny
YAMLs) inside its own :class:`Sandbox` -- a temporary folder with its own ``MMQ_DATA_DIR``,
``MMQ_CACHE_DIR`` and ``MMQ_CHECKPOINTS`` and ``MMQ_TENSORBOARD=0`` -- injects one fault and says what
happened (``observed``) and whether the contract held (``ok``).

Subprocess checks run ``sys.executable scripts/<name>.py ...`` with the sandbox's environment, in a
new session so that a timeout kills the whole process group. Mounted file systems (tmpfs for
read-only / full-disk faults) are registered with the sandbox and unmounted by :meth:`Sandbox.cleanup`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from mmq.runs import REPOSITORY_ROOT
SCRIPTS = REPOSITORY_ROOT / "scripts"
OBSERVED_LIMIT = 300      # characters of ``observed`` kept in the reports
MESSAGE_LIMIT = 120       # characters of an exception message quoted in ``observed``


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a check saw (one line) and whether the case's contract held."""

    ok: bool
    observed: str


@dataclasses.dataclass(frozen=True)
class Case:
    """One fault-injection case: the contract (``expected``) and the check that tests it.

    ``fast``: the check runs in-process in well under a second (no subprocess, no SIGKILL, no mount),
    so the test suite runs it too. ``timeout_s`` bounds the whole check.
    """

    name: str
    category: str
    expected: str
    check: Callable[["Sandbox"], Outcome]
    fast: bool = False
    timeout_s: float = 60.0


Check = Callable[["Sandbox"], Outcome]


def declare(cases: list[Case], category: str) -> Callable[..., Callable[[Check], Check]]:
    """A decorator for one category's checks: ``@case(name, expected, **options)`` appends
    ``Case(name, category, expected, check, **options)`` to ``cases`` (in definition order), check unchanged."""
    def case(name: str, expected: str, **options: Any) -> Callable[[Check], Check]:
        def register(check: Check) -> Check:
            cases.append(Case(name, category, expected, check, **options))
            return check
        return register
    return case


class CaseTimeout(Exception):
    """A check ran past its case's ``timeout_s``."""


PATH = re.compile(r"(?<![\w.])/(?:[^/\s'\":,]+/)+(?=[^/\s'\":,]+/[^/\s'\":,]+)")


def shorten_paths(text: str) -> str:
    """Absolute paths cut to their last two parts (``/tmp/x/y/data/beauty/f.txt`` -> ``.../beauty/f.txt``)."""
    return PATH.sub(".../", text)


def describe(error: BaseException, focus: Iterable[str] = ()) -> str:
    """``Type: first ~120 characters of the message`` (one line, absolute paths shortened).

    ``focus``: regexes whose first match, when it lies past the cut, is quoted too (`` ... <match> ...``).
    """
    message = shorten_paths(" ".join(str(error).split()))
    if len(message) > MESSAGE_LIMIT:
        limit = MESSAGE_LIMIT - 3
        cut = message[:limit] + "..."
        for pattern in focus:
            match = re.search(pattern, message)
            if match is None or match.end() <= limit:
                continue
            if match.start() < limit:  # the match straddles the cut: keep it whole
                cut = message[:match.end()] + "..."
            else:  # quote it from the word boundary before it
                start = message.rfind(" ", limit, max(match.start() - 25, limit)) + 1 or match.start()
                cut += " " + message[start:match.end() + 25].rsplit(" ", 1)[0] + "..."
            break
        message = cut
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def one_line(text: str, limit: int = OBSERVED_LIMIT) -> str:
    """``text`` on one line (absolute paths shortened), cut to ``limit`` characters."""
    text = shorten_paths(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (a traceback's exception line, a CLI's error line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclasses.dataclass
class Completed:
    """A finished (or killed) subprocess: exit code, output, wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    def summary(self) -> str:
        """``rc=N`` and the last stderr line (cut)."""
        tail = shorten_paths(last_line(self.stderr))
        return f"rc={self.returncode}" + (" (timed out)" if self.timed_out else "") + \
            (f", stderr: {one_line(tail, MESSAGE_LIMIT)}" if tail else "")


class Sandbox:
    """A temporary folder with its own data, cache and checkpoint folders (and an environment naming them)."""

    def __init__(self, name: str, base: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"mmq-fault-{name}-", dir=base))
        self.data = self.root / "data"
        self.cache = self.root / "cache"
        self.checkpoints = self.root / "checkpoints"
        self.configs = self.root / "configs"
        for folder in (self.data, self.cache, self.configs):
            folder.mkdir()
        self.mounts: list[Path] = []

    # --- environment ---------------------------------------------------------------------

    def variables(self, **overrides: str | os.PathLike) -> dict[str, str]:
        """The MMQ_* variables of this sandbox (``overrides`` replace any of them)."""
        values = {"MMQ_DATA_DIR": str(self.data), "MMQ_CACHE_DIR": str(self.cache),
                  "MMQ_CHECKPOINTS": str(self.checkpoints), "MMQ_TENSORBOARD": "0",
                  "MMQ_ALLOW_DATA_MISMATCH": "0", "MMQ_DATASETS_DIR": "",  # the user's settings do not leak in
                  "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        values.update({key: str(value) for key, value in overrides.items()})
        return values

    def environment(self, **overrides: str | os.PathLike) -> dict[str, str]:
        """A full environment for a subprocess: this process's, with the sandbox's variables."""
        return {**os.environ, **self.variables(**overrides), "PYTHONUNBUFFERED": "1"}

    @contextlib.contextmanager
    def active(self, **overrides: str | os.PathLike) -> Iterator["Sandbox"]:
        """Set the sandbox's variables in this process for the block (restored afterwards)."""
        with environment(self.variables(**overrides)):
            yield self

    # --- subprocesses --------------------------------------------------------------------

    def script(self, name: str, *arguments: str | os.PathLike) -> list[str]:
        """The command line of ``scripts/<name>.py`` with ``arguments`` under this interpreter."""
        return [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, arguments)]

    def popen(self, command: list[str], *, env: Mapping[str, str] | None = None, log: str | None = None
              ) -> subprocess.Popen:
        """Start ``command`` in its own session (so a kill reaches its children); output to files in the sandbox."""
        log = log or f"proc-{time.monotonic_ns()}"
        stdout = open(self.root / f"{log}.out", "w+", encoding="utf-8")
        stderr = open(self.root / f"{log}.err", "w+", encoding="utf-8")
        process = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=dict(env or self.environment()),
                                   stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True)
        process._reliability_logs = (stdout, stderr)  # type: ignore[attr-defined]
        with open(self.root / ".pids", "a", encoding="utf-8") as handle:  # killed by the runner on a timeout
            handle.write(f"{process.pid}\n")
        return process

    def started_pids(self) -> list[int]:
        """Process (group) ids of every subprocess this sandbox started."""
        try:
            return [int(line) for line in (self.root / ".pids").read_text().split()]
        except (OSError, ValueError):
            return []

    def finish(self, process: subprocess.Popen, timeout: float, started: float | None = None) -> Completed:
        """Wait for ``process`` (kill its group after ``timeout`` seconds); its exit code and output."""
        started = time.monotonic() if started is None else started
        timed_out = False
        try:
            process.wait(timeout=max(timeout - (time.monotonic() - started), 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(process)
            process.wait()
        stdout, stderr = process._reliability_logs  # type: ignore[attr-defined]
        texts = []
        for handle in (stdout, stderr):
            handle.flush()
            handle.seek(0)
            texts.append(handle.read())
            handle.close()
        return Completed(process.returncode, texts[0], texts[1], time.monotonic() - started, timed_out)

    def run(self, command: list[str], *, timeout: float = 60.0, env: Mapping[str, str] | None = None) -> Completed:
        """Run ``command`` to the end (or ``timeout``)."""
        started = time.monotonic()
        return self.finish(self.popen(command, env=env), timeout, started)

    # --- mounts --------------------------------------------------------------------------

    def mount_tmpfs(self, path: Path, size: str) -> Path:
        """Mount a tmpfs of ``size`` (``"256k"``) at ``path``; raises OSError when mounting is not possible."""
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"cannot mount a tmpfs at {path}: {one_line(result.stderr or result.stdout)}")
        self.mounts.append(path)
        return path

    def tmpfs_or_folder(self, path: Path, size: str) -> bool:
        """A real tmpfs of ``size`` at ``path`` when mounting works (False), else a plain folder whose faults
        the case must simulate (True)."""
        try:
            self.mount_tmpfs(path, size)
            return False
        except OSError:
            path.mkdir(parents=True, exist_ok=True)
            return True

    def remount_read_only(self, path: Path) -> None:
        """Make the tmpfs at ``path`` read-only."""
        result = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"cannot remount {path} read-only: {one_line(result.stderr)}")

    def resize_tmpfs(self, path: Path, size: str) -> None:
        """Give the tmpfs at ``path`` a new size (frees a full disk)."""
        result = subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"cannot resize the tmpfs at {path}: {one_line(result.stderr)}")

    def cleanup(self) -> None:
        """Unmount whatever is mounted under the sandbox (deepest first), then delete it."""
        for mount in sorted(mounts_under(self.root), key=lambda path: len(path.parts), reverse=True):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` (from /proc/self/mounts)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    root = root.resolve()
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            point = Path(fields[1].replace("\\040", " "))
            if point == root or root in point.parents:
                points.append(point)
    return points


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``process``'s process group (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the previous values afterwards."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    """Replace ``target.name`` by ``value`` for the block."""
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def patched_everywhere(original: Callable, replacement: Callable) -> Iterator[int]:
    """Replace every module-level reference to ``original`` in loaded ``mmq``/``baselines`` modules.

    Robust to code that imports a function by name (``from mmq.data import load_dataset``): every
    module attribute bound to ``original`` is swapped for the block. Yields how many were replaced.
    """
    swapped = []
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.split(".")[0] in ("mmq", "baselines"):
            continue
        for attribute, value in list(vars(module).items()):
            if value is original:
                swapped.append((module, attribute))
                setattr(module, attribute, replacement)
    try:
        yield len(swapped)
    finally:
        for module, attribute in swapped:
            setattr(module, attribute, original)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One faiss (OpenMP) and one torch thread for the block: tiny fits on shared cores are fastest so."""
    import faiss
    import torch

    faiss_threads, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(faiss_threads)
        torch.set_num_threads(torch_threads)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in this (main) thread after ``seconds`` (SIGALRM; a no-op elsewhere)."""
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"case ran past its {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> bytes): a snapshot to compare later."""
    if not root.exists():
        return {}
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def temporary_files(root: Path) -> list[str]:
    """Temporary files an atomic writer leaves when it could not clean up (``.<name>.*.tmp``)."""
    if not root.exists():
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.tmp"))


def run_folders(root: Path, seed: int | None = None) -> list[Path]:
    """Run folders (``.../seed<k>``) under a checkpoints root, whatever the naming scheme above them."""
    if not root.exists():
        return []
    pattern = f"seed{seed}" if seed is not None else "seed*"
    return sorted(path for path in root.rglob(pattern) if path.is_dir())


def finished_runs(root: Path) -> list[Path]:
    """Run folders holding ``DONE`` under ``root``."""
    return sorted(path.parent for path in root.rglob("DONE")) if root.exists() else []

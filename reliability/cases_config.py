"""Category ``configs``: broken, missing or inconsistent experiment YAMLs; nothing may be trained."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

from reliability import synthetic
from reliability.checks import expect_error, verdict
from reliability.core import SCRIPTS, Case, Outcome, Sandbox, declare, files_under, one_line, run_folders

CATEGORY = "configs"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)


def run_script_main():
    """``scripts/run.py``'s ``main`` (loaded from its file: scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("mmq_reliability_run_script", SCRIPTS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def call_main(arguments: list[str]) -> tuple[int, str, str]:
    """Run ``scripts/run.py`` in-process: (exit code, stdout, stderr)."""
    main = run_script_main()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(arguments)
        except SystemExit as exit_:  # argparse errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, stdout.getvalue(), stderr.getvalue()


def _nothing_written(box: Sandbox) -> str | None:
    written = files_under(box.checkpoints)
    return f"files written under checkpoints: {sorted(written)[:3]}" if written else None


def _run_or_load(path: Path, seed: int = 0):
    import baselines  # noqa: F401  (registers the baseline kinds, as scripts/run.py does)
    from mmq import registry

    return lambda: registry.run_or_load(path, seed, progress=False)


@case("config_unknown_key", "unknown key -> ConfigError naming it and listing the valid keys; nothing "
      "written", fast=True)
def unknown_key(box: Sandbox) -> Outcome:
    from mmq.config import ConfigError

    path = synthetic.sasrec_yaml(box.configs / "bad_key.yaml", epochz=3)
    with box.active():
        return expect_error(_run_or_load(path), types=(ConfigError,), names=["epochz", "valid keys", "epochs"],
                            also=lambda: _nothing_written(box))


def _broken(box: Sandbox, name: str, text: str, names: list[str]) -> Outcome:
    from mmq.config import ConfigError

    path = box.configs / name
    path.write_text(text)
    with box.active():
        return expect_error(_run_or_load(path), types=(ConfigError,), names=[str(path), *names],
                            also=lambda: _nothing_written(box))


@case("config_yaml_syntax", "YAML syntax error -> ConfigError naming the file and line; nothing written", fast=True)
def yaml_syntax(box: Sandbox) -> Outcome:
    return _broken(box, "syntax.yaml", "kind: sasrec\nepochs: [2\nhidden_size: 8\n", ["not valid YAML", "line"])


@case("config_top_level_list", "top level a list -> ConfigError 'must be a mapping'; nothing written", fast=True)
def top_level_list(box: Sandbox) -> Outcome:
    return _broken(box, "list.yaml", "- kind: sasrec\n- epochs: 2\n", ["mapping"])


@case("config_missing_file", "missing config file -> ConfigError 'not found' naming the path", fast=True)
def missing_file(box: Sandbox) -> Outcome:
    from mmq.config import ConfigError

    path = box.configs / "nowhere.yaml"
    with box.active():
        return expect_error(_run_or_load(path), types=(ConfigError,), names=["not found", str(path)],
                            also=lambda: _nothing_written(box))


@case("config_missing_kind", "no kind: line -> ConfigError listing the registered kinds", fast=True)
def missing_kind(box: Sandbox) -> Outcome:
    return _broken(box, "no_kind.yaml", "dataset: beauty\nepochs: 2\n", ["kind", "mmq_tokenizer", "sasrec"])


@case("config_unknown_kind", "unknown kind -> ConfigError naming it and listing the registered kinds", fast=True)
def unknown_kind(box: Sandbox) -> Outcome:
    return _broken(box, "unknown_kind.yaml", "kind: transformer_xl\nepochs: 2\n", ["transformer_xl", "mmq_tokenizer", "sasrec"])


@case("config_negative_seed_api", "run_or_load(seed=-1) -> refused before any work; no seed-1 folder", fast=True)
def negative_seed_api(box: Sandbox) -> Outcome:
    with synthetic.probe_world(box) as (probe, path):
        outcome = expect_error(_run_or_load(path, -1), names=["-1"])
        problems = [] if outcome.ok else [outcome.observed]
        if probe["calls"]:
            problems.append(f"runner called {probe['calls']} time(s)")
        created = [str(path.relative_to(box.root)) for path in box.root.rglob("seed-1*")]
        if created:
            problems.append(f"created {created}")
    return verdict(problems, outcome.observed + "; runner not called, no seed-1 folder")


@case("config_negative_seed_cli", "run.py --seeds 0 -1 -> non-zero exit naming the seed before any run starts (not "
      "even seed 0)", fast=True)
def negative_seed_cli(box: Sandbox) -> Outcome:
    path = synthetic.sasrec_yaml(box.configs / "tiny.yaml")
    with box.active():
        code, _, stderr = call_main([str(path), "--seeds", "0", "-1", "--no-progress"])
    problems = [] if code != 0 else ["exit code 0"]
    if "seed" not in stderr:
        problems.append(f"stderr does not mention the seed: {one_line(stderr, 80)!r}")
    created = [str(path.relative_to(box.root)) for path in box.root.rglob("seed*")]
    if created:
        problems.append(f"created {created} (work started before the refusal)")
    line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return verdict(problems, f"exit {code}: {one_line(line[line.find('error:'):] if 'error:' in line else line, 110)}")


@case("config_semantic_ids_not_sid", "semantic_ids: naming a non-SID config -> --check fails and the run is refused "
      "(ConfigError naming it) before any work", fast=True)
def semantic_ids_not_sid(box: Sandbox) -> Outcome:
    """A ranking row whose ``semantic_ids:`` names a SASRec config (a kind that yields no SIDs)."""
    import baselines  # noqa: F401
    from mmq import registry
    from mmq.config import ConfigError

    upstream = synthetic.sasrec_yaml(box.configs / "not_a_tokenizer.yaml")
    path = synthetic.write_yaml(box.configs / "ranking_on_sasrec.yaml",
                                {**synthetic.TINY_RANKING, "semantic_ids": str(upstream)})
    with box.active():
        code, stdout, _ = call_main(["--check", str(path)])
        problems = [] if code != 0 else [f"--check exit 0 ({one_line(stdout, 80)})"]
        checked = {str(item): error for item, error in registry.check_all(box.configs)}
        if checked.get(str(path)) is None:
            problems.append("check_all reports the ranking YAML ok")
        outcome = expect_error(_run_or_load(path), types=(ConfigError,), names=["not_a_tokenizer.yaml", "semantic ID"],
                               also=lambda: _nothing_written(box))
        if not outcome.ok:
            problems.append(f"run: {outcome.observed}")
    return verdict(problems, f"--check exit {code}; run refused: {outcome.observed}")


@case("config_check_exit_code", "run.py --check on a broken YAML -> exit 1, a FAIL line naming the file", fast=True)
def check_exit_code(box: Sandbox) -> Outcome:
    good = synthetic.sasrec_yaml(box.configs / "good.yaml")
    bad = box.configs / "bad.yaml"
    bad.write_text("kind: sasrec\nepochs: [2\n")
    with box.active():
        code_good, _, _ = call_main(["--check", str(good)])
        code_bad, stdout, _ = call_main(["--check", str(good), str(bad)])
    problems = []
    if code_good != 0:
        problems.append(f"a good YAML gives exit {code_good}")
    if code_bad == 0:
        problems.append("a broken YAML gives exit 0")
    if f"FAIL {bad}" not in stdout:
        problems.append("the broken YAML is not named on a FAIL line")
    if run_folders(box.checkpoints):
        problems.append("--check created run folders")
    return verdict(problems, f"--check exit {code_good} (good), {code_bad} (good + broken), FAIL line names bad.yaml")


@case("config_unknown_history_exclusion", "evaluation.history_exclusion: after -> ConfigError naming the value and "
      "the three protocols; nothing written", fast=True)
def unknown_history_exclusion(box: Sandbox) -> Outcome:
    return _broken(box, "exclusion.yaml", "kind: generative\nevaluation:\n  history_exclusion: after\n",
                   ["'after'", "full_in_beam", "recent_after_beam", "none"])


@case("config_zero_test_events", "split.test_events: 0 -> ConfigError naming test_events; nothing written", fast=True)
def zero_test_events(box: Sandbox) -> Outcome:
    return _broken(box, "events.yaml", "kind: sasrec\nsplit:\n  test_events: 0\n", ["test_events", "0"])


@case("config_tie_shuffle_without_times", "tie_shuffle_seed on P5 data (no timestamps) -> ValueError naming the "
      "dataset and 'timestamp'", fast=True)
def tie_shuffle_without_times(box: Sandbox) -> Outcome:
    import numpy as np
    import pandas as pd

    from mmq.data.schema import ImportReport, build_dataset
    from mmq.data.splits import SequenceSplitConfig, leave_one_out

    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["a", "b", "c"], "image": ""})
    dataset = build_dataset("p5toy", items, ["u"] * 3, ["a", "b", "c"], report=ImportReport(dataset="p5toy"),
                            text_fields=("title",), positions=np.arange(3))
    return expect_error(lambda: leave_one_out(dataset, config=SequenceSplitConfig(tie_shuffle_seed=0)),
                        types=(ValueError,), names=["p5toy", "timestamp"])

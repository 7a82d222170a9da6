"""The experiment registry: every YAML under experiments/ loads through it; kinds pick runners; bad configs fail."""

from __future__ import annotations

import dataclasses

import pytest

import baselines  # noqa: F401  (registers the baseline kinds)
from mmq import registry
from mmq.config import ConfigError
from mmq.runs import REPOSITORY_ROOT

EXPERIMENTS = sorted((REPOSITORY_ROOT / "experiments").rglob("*.yaml"))


def test_there_are_experiment_yamls():
    assert len(EXPERIMENTS) > 50


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: str(path.relative_to(REPOSITORY_ROOT / "experiments")))
def test_every_experiment_yaml_loads_and_validates(path):
    kind, config = registry.load_experiment(path)
    assert isinstance(config, kind.config_class)
    for field in ("semantic_ids", "init_from"):  # upstream configs named by a row load too
        upstream = getattr(config, field, None)
        if upstream:
            upstream_kind, _ = registry.load_experiment(upstream)
            if field == "semantic_ids":
                assert upstream_kind.semantic_id_metrics is not None, f"{upstream} yields no SIDs"


def test_check_all_reports_ok_for_the_repository_and_names_broken_files(tmp_path):
    assert all(error is None for _, error in registry.check_all())
    (tmp_path / "good.yaml").write_text("kind: ranking\nitem_features: id\n")
    (tmp_path / "no_kind.yaml").write_text("item_features: id\n")
    (tmp_path / "unknown_kind.yaml").write_text("kind: transformer\n")
    (tmp_path / "unknown_key.yaml").write_text("kind: ranking\nlearning_rate: 3\n")
    (tmp_path / "bad_value.yaml").write_text("kind: ranking\nitem_features: title\n")
    (tmp_path / "bad_upstream.yaml").write_text("kind: generative\nsemantic_ids: nowhere.yaml\n")
    (tmp_path / "syntax.yaml").write_text("kind: ranking\nppnet: {dropout: 0.1\n")
    (tmp_path / "list.yaml").write_text("- kind: ranking\n")
    errors = {path.name: error for path, error in registry.check_all(tmp_path)}
    assert errors.pop("good.yaml") is None
    expected = {"no_kind.yaml": "no top-level 'kind:'", "unknown_kind.yaml": "unknown experiment kind 'transformer'",
                "unknown_key.yaml": "unknown key(s) ['learning_rate']", "bad_value.yaml": "item_features",
                "bad_upstream.yaml": "config file not found: nowhere.yaml", "syntax.yaml": "not valid YAML",
                "list.yaml": "top level must be a mapping"}
    assert set(errors) == set(expected)
    for name, message in expected.items():
        assert message in errors[name], (name, errors[name])


def test_run_script_check_exits_non_zero_on_a_broken_yaml(tmp_path, capsys):
    from scripts.run import main

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("kind: sasrec\nepochs: 2\n")
    bad.write_text("kind: sasrec\nepochz: 2\n")
    assert main(["--check", str(good)]) == 0
    assert main(["--check", str(good), str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main([str(bad)]) == 2  # a run refuses before any work, naming the key
    assert "epochz" in capsys.readouterr().err
    assert main(["--list-kinds"]) == 0
    assert "multimodal_sid_tokenizer" in capsys.readouterr().out


def test_the_kind_line_picks_the_config_class(tmp_path):
    text, multimodal, mmq = tmp_path / "text.yaml", tmp_path / "multi.yaml", tmp_path / "mmq.yaml"
    text.write_text("kind: text_sid_tokenizer\ndataset: beauty\nmethod: opq\n")
    multimodal.write_text("kind: multimodal_sid_tokenizer\ninputs: {dataset: movielens}\nfusion: ms\nmethod: opq\n")
    mmq.write_text("kind: mmq_tokenizer\ninputs: {dataset: movielens}\n")
    names = [type(registry.load_experiment(path)[1]).__name__ for path in (text, multimodal, mmq)]
    assert names == ["SemanticIdConfig", "MultimodalBaselineConfig", "MMQTokenizerConfig"]
    mmq.write_text("kind: mmq_tokenizer\nmethod: mmq\n")  # MMQ's config has no baseline fields
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['method'\]"):
        registry.load_experiment(mmq)


def test_a_new_kind_is_one_registration(tmp_path, isolated_dirs):
    @dataclasses.dataclass(frozen=True)
    class CountConfig:
        upto: int = 3

    calls = []

    def runner(config, seed, directory, progress):
        calls.append(seed)
        return {"total": sum(range(config.upto)) + seed}

    kind = registry.ExperimentKind("test_count", CountConfig, runner, "a test kind")
    registry.register(kind)
    try:
        path = tmp_path / "count.yaml"
        path.write_text("kind: test_count\nupto: 4\n")
        assert registry.run_or_load(path, 2)["metrics"] == {"total": 8}
        assert registry.run_or_load(path, 2)["metrics"] == {"total": 8} and calls == [2]  # reused, not rerun
        assert registry.is_done(path, 2) and not registry.is_done(path, 0)
        with pytest.raises(ConfigError, match="yields no semantic IDs"):
            registry.semantic_id_run(path, 2)
        with pytest.raises(ValueError, match="registered twice"):
            registry.register(dataclasses.replace(kind, description="another"))
    finally:
        registry._KINDS.pop("test_count")


def test_mmq_does_not_import_baselines():
    import subprocess
    import sys

    code = ("import sys, mmq.registry, mmq.tables, mmq.finetune.runs; "
            "print(sorted({name.split('.')[0] for name in sys.modules} & {'baselines'}))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_force_retrains_from_scratch_instead_of_resuming(tmp_path, isolated_dirs):
    @dataclasses.dataclass(frozen=True)
    class StepConfig:
        rate: float = 1.0

    def runner(config, seed, directory, progress):
        resumed = (directory / "state.pt").exists()
        (directory / "state.pt").write_text("finished state")
        return {"rate": config.rate, "resumed": resumed}

    registry.register(registry.ExperimentKind("test_force", StepConfig, runner, "a test kind"))
    try:
        path = tmp_path / "force.yaml"
        path.write_text("kind: test_force\nrate: 1.0\n")
        assert registry.run_or_load(path, 0)["metrics"] == {"rate": 1.0, "resumed": False}
        path.write_text("kind: test_force\nrate: 2.0\n")
        assert registry.run_or_load(path, 0, force=True)["metrics"] == {"rate": 2.0, "resumed": False}
    finally:
        registry._KINDS.pop("test_force")


@pytest.fixture
def counting_kinds():
    """Two test kinds: ``test_sid`` (writes a SID table) and ``test_consumer`` (reads it through the registry)."""
    import numpy as np

    from mmq.semantic_ids.dedup import sid_table_hash

    @dataclasses.dataclass(frozen=True)
    class SidConfig:
        size: int = 4
        fail: bool = False

    @dataclasses.dataclass(frozen=True)
    class ConsumerConfig:
        semantic_ids: str = ""
        rate: float = 1.0

    calls = []

    def sid_runner(config, seed, directory, progress):
        calls.append(("sid", seed))
        if config.fail:
            raise RuntimeError("injected failure")
        table = np.arange(config.size * 2).reshape(config.size, 2) + seed
        np.save(directory / "semantic_ids.npy", table)
        return {"semantic_id_table": {"path": "semantic_ids.npy", "sha256": sid_table_hash(table)}}

    def consumer_runner(config, seed, directory, progress):
        calls.append(("consumer", seed))
        loaded = registry.semantic_id_table(config.semantic_ids, seed)
        return {"total": int(loaded.table.sum()) * config.rate}

    kinds = (registry.ExperimentKind("test_sid", SidConfig, sid_runner, "test",
                                     semantic_id_metrics=lambda report: dict(report["metrics"]),
                                     artifacts=lambda config: ("semantic_ids.npy",), typical_minutes=7),
             registry.ExperimentKind("test_consumer", ConsumerConfig, consumer_runner, "test", typical_minutes=2,
                                     upstream=lambda config: [registry.Upstream("semantic_ids", config.semantic_ids)]))
    registry.register(*kinds)
    yield calls
    for kind in kinds:
        registry._KINDS.pop(kind.name)


def test_run_identity_is_content_and_upstream_runs_are_built_first(tmp_path, isolated_dirs, counting_kinds):
    sids, consumer = tmp_path / "sids.yaml", tmp_path / "consumer.yaml"
    sids.write_text("kind: test_sid\nsize: 4\n")
    consumer.write_text(f"kind: test_consumer\nsemantic_ids: {sids}\n")
    with pytest.raises(registry.MissingRunsError) as missing:  # --no-train names every missing run and its time
        registry.run_or_load(consumer, 0, no_train=True)
    assert "sids.yaml seed 0: ~7 min" in str(missing.value) and "total ~9 min" in str(missing.value)
    first = registry.run_or_load(consumer, 0)["metrics"]
    assert counting_kinds == [("consumer", 0), ("sid", 0)] and first == {"total": 28.0}
    assert registry.run_or_load(consumer, 0)["metrics"] == first and len(counting_kinds) == 2  # reused
    consumer_folder = registry.run_directory(consumer, 0)
    consumer.write_text(f"kind: test_consumer\nsemantic_ids: {sids}\nrate: 2.0\n")  # edited after the run
    assert registry.run_directory(consumer, 0) != consumer_folder
    assert registry.run_or_load(consumer, 0)["metrics"] == {"total": 56.0}  # a new run, not the old report
    sids.write_text("kind: test_sid\nsize: 5\n")  # an upstream edit changes the downstream identity too
    assert not registry.is_done(consumer, 0)


def test_a_modified_sid_table_is_refused_and_absent_artifacts_are_rebuilt(tmp_path, isolated_dirs, counting_kinds):
    import numpy as np

    sids = tmp_path / "sids.yaml"
    sids.write_text("kind: test_sid\n")
    registry.run_or_load(sids, 1)
    table_path = registry.run_directory(sids, 1) / "semantic_ids.npy"
    np.save(table_path, np.load(table_path)[::-1])  # rows permuted after the run
    with pytest.raises(ValueError, match="does not match the sha256"):
        registry.semantic_id_table(sids, 1)
    table_path.unlink()  # a fresh clone: the report is committed, the table is not
    assert registry.is_done(sids, 1) and not registry.is_usable(sids, 1)
    assert registry.semantic_id_table(sids, 1).table.shape == (4, 2) and counting_kinds.count(("sid", 1)) == 2


def test_a_failed_forced_rerun_leaves_the_finished_run(tmp_path, isolated_dirs, counting_kinds):
    sids = tmp_path / "sids.yaml"
    sids.write_text("kind: test_sid\n")
    report = registry.run_or_load(sids, 0)
    working = registry.get_kind("test_sid")
    registry._KINDS["test_sid"] = dataclasses.replace(working, runner=lambda *args: 1 / 0)
    try:
        with pytest.raises(ZeroDivisionError):
            registry.run_or_load(sids, 0, force=True)
    finally:
        registry._KINDS["test_sid"] = working
    assert registry.run_or_load(sids, 0) == report and (registry.run_directory(sids, 0) / "DONE").exists()


def test_a_run_made_on_other_data_is_refused(tmp_path, isolated_dirs, counting_kinds, monkeypatch):
    from mmq import artifacts

    sids = tmp_path / "sids.yaml"
    sids.write_text("kind: test_sid\n")
    registry.run_or_load(sids, 0)
    report_path = registry.run_directory(sids, 0) / "report.json"
    artifacts.write_json(report_path, {**artifacts.read_json(report_path), "datasets": {"beauty": "0123456789abcdef"}})
    monkeypatch.setitem(registry._FINGERPRINTS, registry.fingerprint_cache_key("beauty"), "fedcba9876543210")
    with pytest.raises(registry.DataChangedError, match="fingerprint 0123456789abcdef"):
        registry.run_or_load(sids, 0)
    monkeypatch.setitem(registry._FINGERPRINTS, registry.fingerprint_cache_key("beauty"), None)  # data absent: nothing to compare with
    assert registry.run_or_load(sids, 0)["datasets"] == {"beauty": "0123456789abcdef"}


def test_no_module_of_mmq_imports_baselines():
    import re

    pattern = re.compile(r"^\s*(from|import)\s+baselines\b", re.MULTILINE)
    offenders = [str(path) for path in (REPOSITORY_ROOT / "mmq").rglob("*.py") if pattern.search(path.read_text())]
    assert offenders == []

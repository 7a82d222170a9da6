"""Config loader: defaults, nested overrides, type checks, unknown keys rejected."""

from __future__ import annotations

import dataclasses

import pytest

from mmq.config import ConfigError, from_dict, load_config, to_dict


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 4
    rate: float = 0.5
    fields: tuple[str, ...] = ("title",)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "beauty"
    limit: int | None = None
    flag: bool = True
    inner: Inner = Inner()


def test_defaults_and_nested_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: toys\ninner:\n  width: 7\n  fields: [title, brand]\n")
    config = load_config(Outer, path)
    assert config == Outer(name="toys", inner=Inner(width=7, fields=("title", "brand")))
    assert to_dict(config)["inner"]["fields"] == ["title", "brand"]


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  widht: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['widht'\].*valid keys: \['fields', 'rate', 'width'\]"):
        load_config(Outer, path)


@pytest.mark.parametrize("values, message", [
    ({"limit": "ten"}, "expected an integer"),
    ({"flag": 1}, "expected true/false"),
    ({"inner": {"rate": "fast"}}, "expected a number"),
    ({"inner": 3}, "expected a mapping"),
])
def test_type_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, values)


def test_int_promoted_to_float_and_optional_none():
    config = from_dict(Outer, {"inner": {"rate": 1}, "limit": None})
    assert config.inner.rate == 1.0 and isinstance(config.inner.rate, float)
    assert config.limit is None


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "absent.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Outer, path)


def test_shipped_experiment_configs_load():
    """Every YAML under experiments/ matches the dataclass it configures."""
    from baselines.faiss_ann.experiment import DenseRetrievalConfig
    from mmq.runs import REPOSITORY_ROOT

    for path in sorted((REPOSITORY_ROOT / "experiments" / "ch1").glob("*.yaml")):
        assert load_config(DenseRetrievalConfig, path).dataset


@dataclasses.dataclass(frozen=True)
class WithCustomNested:
    stage: Inner = Inner(width=9, rate=2.0)


def test_nested_override_starts_from_the_fields_default():
    config = from_dict(WithCustomNested, {"stage": {"rate": 3.0}})
    assert config.stage == Inner(width=9, rate=3.0)  # width keeps the field's default 9, not Inner's 4

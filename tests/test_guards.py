"""Guards: values faiss cannot take, artifact permissions, commands that could not do their work."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from mmq import artifacts
from mmq.arrays import MAX_ABS_VALUE, check_finite_rows


def test_huge_finite_values_are_refused_before_faiss():
    from baselines.faiss_ann.index import IndexSpec, build_index
    from baselines.sid_tokenizers import RQKMeansTokenizer

    vectors = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    vectors[[3, 7]] = 1e20
    with pytest.raises(ValueError, match=r"2 row\(s\) with values of magnitude >= 1e\+15 \(first rows: \[3, 7\]\)"):
        build_index(vectors, IndexSpec(name="flat", factory="Flat"))
    with pytest.raises(ValueError, match="magnitude"):
        RQKMeansTokenizer(num_levels=2, codebook_size=4).fit(vectors)
    check_finite_rows(np.full((2, 3), MAX_ABS_VALUE / 2, dtype=np.float32), name="ok")  # below the bound passes
    with pytest.raises(ValueError, match="NaN or inf"):
        check_finite_rows(np.array([[0.0, np.inf]]), name="x")


def test_artifacts_get_ordinary_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        artifacts.write_json(tmp_path / "report.json", {"a": 1})
        artifacts.save_npy(tmp_path / "table.npy", np.zeros(3))
    finally:
        os.umask(previous)
    for name in ("report.json", "table.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_data_commands_fail_when_no_data_is_there(tmp_path, monkeypatch, capsys):
    from scripts.download_data import main as download_main
    from scripts.prepare_data import main as prepare_main

    monkeypatch.setenv("MMQ_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    assert download_main(["--verify", "--root", str(tmp_path / "nothing")]) == 2
    assert prepare_main(["--all"]) == 2
    assert prepare_main(["beauty"]) == 2
    assert "missing under" in capsys.readouterr().err

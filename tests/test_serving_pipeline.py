"""Search pipelines behind the API (multiphase retrieval, rerank stages), A/B routing with exposure logging, and
POST /recommend's request handling -- on a tiny synthetic catalogue with a fake encoder, reranker and recommender."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fastapi.testclient import TestClient

from baselines.serving.ab import Experiment, ExposureLog
from baselines.serving.app import create_app
from baselines.serving.engine import SearchEngine, UnknownItemError, build_version, parse_pipeline, pipeline_name
from baselines.serving.stages import fit_multiphase
from tests.test_serving import DIM, brute_force, catalogue, fake_encoder


@dataclasses.dataclass
class ReverseReranker:
    """Reverses the retrieval order of its top ``depth`` (so the test can tell it ran)."""

    depth: int = 8
    name: str = "lightgbm"
    calls: int = 0

    def score(self, query, rows, scores):
        self.calls += 1
        assert len(rows) == len(scores) <= self.depth
        return -np.asarray(scores, dtype=np.float32)


@dataclasses.dataclass
class FakeRecommendation:
    items: list
    timings_ms: dict
    version: str = "fake-v1"
    complete: bool = True


class FakeRecommender:
    """Recommends the catalogue in order, skipping the history."""

    name, version = "fake", "fake-v1"

    def __init__(self, ids):
        self.catalogue = tuple(ids)

    def recommend(self, history, k):
        unknown = [item for item in history if item not in self.catalogue]
        if unknown:
            raise UnknownItemError(unknown)
        items = [{"item_id": item, "score": 1.0} for item in self.catalogue if item not in set(history)][:k]
        return FakeRecommendation(items, {"encode": 0.1, "retrieve": 0.2, "total": 0.3})


@pytest.fixture
def pipeline_engine():
    vectors, ids, records = catalogue(1, num=200)
    multiphase = fit_multiphase(vectors, code_length=2, codebook_size=8, probe=8, min_candidates=200)
    reranker = ReverseReranker()
    version = build_version("v1", vectors, ids, records, multiphase=multiphase, rerankers={"lightgbm": reranker})
    return SearchEngine(fake_encoder, version), (vectors, ids, records), reranker


def test_pipeline_specs_parse_and_bad_ones_name_the_choices():
    assert parse_pipeline("dense") == ("dense", None)
    assert parse_pipeline("multiphase+lightgbm_ce") == ("multiphase", "lightgbm_ce")
    assert pipeline_name("dense", "lightgbm") == "dense+lightgbm"
    for bad in ("ivf", "dense+bm25", "dense+lightgbm+x", ""):
        with pytest.raises(ValueError, match="retrieval in"):
            parse_pipeline(bad)


def test_multiphase_that_scans_everything_equals_dense_and_the_reranker_reorders(pipeline_engine):
    engine, (vectors, ids, _), reranker = pipeline_engine
    dense = engine.search("red dress", 5)
    multiphase = engine.search("red dress", 5, retrieval="multiphase")       # min_candidates = catalogue: exact
    assert [item["item_id"] for item in dense.items] == brute_force(vectors, ids, "red dress", 5)
    assert [item["item_id"] for item in multiphase.items] == [item["item_id"] for item in dense.items]
    reranked = engine.search("red dress", 5, retrieval="dense", rerank="lightgbm")
    top8 = brute_force(vectors, ids, "red dress", 8)
    assert [item["item_id"] for item in reranked.items] == top8[::-1][:5] and reranker.calls == 1
    assert all("retrieval_score" in item for item in reranked.items) and reranked.timings_ms["rerank"] >= 0
    again = engine.search("red dress", 5, retrieval="dense", rerank="lightgbm")   # cached per pipeline
    assert again.result_cached and reranker.calls == 1 and again.items == reranked.items


def test_the_api_serves_pipelines_and_refuses_stages_it_does_not_load(pipeline_engine):
    engine, (vectors, ids, _), _ = pipeline_engine
    client = TestClient(create_app(engine, pipeline="multiphase"), raise_server_exceptions=False)
    body = client.post("/search", json={"query": "wool hat", "k": 3}).json()
    assert body["pipeline"] == "multiphase" and [i["item_id"] for i in body["items"]] == brute_force(
        vectors, ids, "wool hat", 3)
    assert client.post("/search", json={"query": "wool hat", "pipeline": "dense+lightgbm"}).json()["pipeline"] == \
        "dense+lightgbm"
    missing = client.post("/search", json={"query": "wool hat", "pipeline": "dense+lightgbm_ce"})
    assert missing.status_code == 422 and "lightgbm_ce" in missing.json()["detail"] and "available" in \
        missing.json()["detail"]
    bad = client.post("/search", json={"query": "wool hat", "pipeline": "ivf"})
    assert bad.status_code == 422 and "pipeline" in str(bad.json()["detail"])
    plain = SearchEngine(fake_encoder, build_version("v2", *catalogue(2)))
    refused = TestClient(create_app(plain)).post("/search", json={"query": "x", "pipeline": "multiphase"})
    assert refused.status_code == 422 and "multiphase" in refused.json()["detail"]


def test_ab_routing_is_deterministic_logged_and_measured(pipeline_engine, tmp_path):
    engine, _, _ = pipeline_engine
    experiment = Experiment("rerank-test", "s1", ("control", "treatment"), (0.5, 0.5))
    log = ExposureLog(tmp_path / "exposures.jsonl")
    app = create_app(engine, experiment=experiment, arm_pipelines={"control": "dense", "treatment": "dense+lightgbm"},
                     exposure_log=log)
    client = TestClient(app)
    users = [f"u{i}" for i in range(40)]
    arms = {}
    for user in users:
        body = client.post("/search", json={"query": "linen shirt", "k": 3, "user_id": user}).json()
        assert body["arm"] == experiment.assign(user)
        assert body["pipeline"] == {"control": "dense", "treatment": "dense+lightgbm"}[body["arm"]]
        arms[user] = body["arm"]
    assert set(arms.values()) == {"control", "treatment"}
    again = client.post("/search", json={"query": "other", "user_id": "u7"}).json()
    assert again["arm"] == arms["u7"]
    explicit = client.post("/search", json={"query": "other", "user_id": "u7", "pipeline": "multiphase"}).json()
    assert explicit["arm"] is None and explicit["pipeline"] == "multiphase"     # an explicit pipeline is not routed
    exposures = log.read()
    assert len(exposures) == 41 and exposures[40]["unit"] == "u7" and [row["unit"] for row in exposures[:40]] == users
    assert all(row["arm"] == arms[row["unit"]] and row["experiment"] == "rerank-test" for row in exposures)
    assert all(row["total_ms"] >= 0 and row["request_id"] for row in exposures)
    metrics = client.get("/metrics").text
    counted = sum(1 for row in exposures if row["arm"] == "treatment")
    assert f'mmq_arm_latency_seconds_count{{arm="treatment",experiment="rerank-test"}} {float(counted)}' in metrics
    assert client.get("/health").json()["experiment"]["arms"]["treatment"] == "dense+lightgbm"
    with pytest.raises(ValueError, match="no pipeline"):
        create_app(engine, experiment=experiment, arm_pipelines={"control": "dense"})


def test_recommend_endpoint_validates_history_k_and_backend(pipeline_engine):
    engine, (_, ids, _), _ = pipeline_engine
    client = TestClient(create_app(engine, recommenders={"fake": FakeRecommender(ids)}, max_history=5, max_k=20),
                        raise_server_exceptions=False)
    body = client.post("/recommend", json={"history": ["p0", "p2"], "k": 3}).json()
    assert body["backend"] == "fake" and [i["item_id"] for i in body["items"]] == ["p1", "p3", "p4"]
    assert body["complete"] and body["timings_ms"]["total"] == 0.3
    for request, expected in [({"history": [], "k": 3}, "at least 1"), ({"history": ["p0"] * 6}, "at most 5"),
                              ({"history": ["p0"], "k": 0}, "greater than or equal to 1"),
                              ({"history": "p0"}, "valid list"), ({"history": ["p0"], "backend": "sasrec"}, "fake"),
                              ({"history": ["p0", "nope"]}, "nope")]:
        response = client.post("/recommend", json=request)
        assert response.status_code == 422 and expected in str(response.json()["detail"]), (request, response.json())
    assert "mmq_recommend_latency_seconds_count{backend=\"fake\"} 1.0" in client.get("/metrics").text
    without = TestClient(create_app(engine)).post("/recommend", json={"history": ["p0"]})
    assert without.status_code in (404, 422)


def test_serving_config_rejects_stages_it_does_not_load_and_bad_values():
    from baselines.serving.asgi import serving_config
    from baselines.serving.config import ABConfig, ServingConfig

    assert ServingConfig(multiphase=True, rerankers=("lightgbm",), pipeline="multiphase+lightgbm").pipeline
    for kwargs, message in [({"pipeline": "multiphase"}, "multiphase is false"),
                            ({"pipeline": "dense+lightgbm"}, "does not load"),
                            ({"query_encoder": "tflite"}, "query_encoder must be one of"),
                            ({"workers": 0}, "workers must be"),
                            ({"pad_to": 100, "multiphase": True}, "pad_to"),
                            ({"ab": ABConfig(enabled=True, pipelines=("dense", "multiphase"))}, "A/B pipeline"),
                            ({"host": "0.0.0.0"}, "loopback")]:
        with pytest.raises(ValueError, match=message):
            ServingConfig(**kwargs)
    with pytest.raises(ValueError, match="one pipeline per arm"):
        ABConfig(pipelines=("dense",))
    with pytest.raises(ValueError, match="split"):
        ABConfig(split=(0.7, 0.7))
    with pytest.raises(Exception, match="unknown key"):
        serving_config("baselines/serving/myntra_search.yaml", {"bogus": 1})
    assert serving_config("baselines/serving/capstone_serving.yaml").ab.enabled


def test_benchmark_padding_keeps_the_real_rows_and_adds_unit_synthetic_ones():
    from baselines.serving.config import pad_catalogue

    vectors, ids, records = catalogue(3, num=2100)
    padded, padded_ids, padded_records = pad_catalogue(vectors, ids, records, 2500, seed=0)
    assert padded.shape == (2500, DIM) and np.array_equal(padded[:2100], vectors)
    assert padded_ids[:2100] == ids and padded_ids[2100] == "synthetic-0" and len(set(padded_ids)) == 2500
    assert np.allclose(np.linalg.norm(padded[2100:], axis=1), 1.0, atol=1e-4)
    assert "synthetic" in padded_records["synthetic-399"]["text"]
    again, _, _ = pad_catalogue(vectors, ids, records, 2500, seed=0)
    assert np.array_equal(again, padded)

"""The served API on a tiny synthetic catalogue: every endpoint's happy path, each bad request, the caches and
their invalidation by a hot swap, a swap under concurrent searches, and errors that never leak a traceback."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from baselines.serving.app import create_app
from baselines.serving.engine import SearchEngine, build_version

DIM = 16


def fake_encoder(texts: list[str]) -> np.ndarray:
    """Deterministic unit vectors from a hash of the text; 'explode' makes it fail (a server error)."""
    rows = []
    for text in texts:
        if "explode" in text:
            raise RuntimeError("encoder crashed")
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).normal(size=DIM)
        rows.append(vector / np.linalg.norm(vector))
    return np.asarray(rows, dtype=np.float32)


def catalogue(seed: int, num: int = 50):
    vectors = np.random.default_rng(seed).normal(size=(num, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(num)]
    return vectors, ids, {item: {"title": f"product {item}"} for item in ids}


def brute_force(vectors, ids, query: str, k: int) -> list[str]:
    scores = vectors @ fake_encoder([query])[0]
    return [ids[row] for row in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture
def served():
    vectors, ids, records = catalogue(0)
    engine = SearchEngine(fake_encoder, build_version("v1", vectors, ids, records))
    app = create_app(engine, max_query_chars=40, max_k=20)
    return TestClient(app, raise_server_exceptions=False), app, (vectors, ids, records)


def test_search_returns_the_exact_top_k_with_timings_and_caches_repeats(served):
    client, _, (vectors, ids, _) = served
    response = client.post("/search", json={"query": "  blue   shirt ", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "blue shirt" and body["index_version"] == "v1" and not body["cached"]
    assert [item["item_id"] for item in body["items"]] == brute_force(vectors, ids, "blue shirt", 5)
    assert body["items"][0]["title"] == f"product {body['items'][0]['item_id']}"
    assert [item["score"] for item in body["items"]] == sorted((item["score"] for item in body["items"]), reverse=True)
    assert set(body["timings_ms"]) == {"embed", "retrieve", "rerank", "total"} and response.headers["x-request-id"]
    assert body["pipeline"] == "dense" and body["arm"] is None
    again = client.post("/search", json={"query": "blue shirt", "k": 5}).json()
    assert again["cached"] and again["items"] == body["items"]
    other_k = client.post("/search", json={"query": "blue shirt", "k": 3}).json()   # new result, cached embedding
    assert not other_k["cached"] and [i["item_id"] for i in other_k["items"]] == brute_force(vectors, ids, "blue shirt", 3)
    metrics = client.get("/metrics").text
    assert 'mmq_cache_total{cache="result",outcome="hit"} 1.0' in metrics
    assert 'mmq_cache_total{cache="embedding",outcome="hit"} 1.0' in metrics
    assert 'mmq_stage_latency_seconds_count{stage="total"} 3.0' in metrics
    assert 'mmq_requests_total{endpoint="/search",status="200"} 3.0' in metrics


@pytest.mark.parametrize("body, field", [
    ({"query": "", "k": 5}, "empty"), ({"query": "   ", "k": 5}, "empty"), ({"query": "x" * 41}, "40 characters"),
    ({"query": "shirt", "k": 0}, "greater than or equal to 1"), ({"query": "shirt", "k": 21}, "less than or equal to 20"),
    ({"query": "shirt", "k": "ten"}, "valid integer"), ({"k": 5}, "Field required"), ({"query": 5}, "valid string"),
])
def test_bad_search_requests_get_422_naming_the_problem(served, body, field):
    client, _, _ = served
    response = client.post("/search", json=body)
    assert response.status_code == 422
    assert field in response.text


def test_items_health_and_unknown_ids(served):
    client, _, _ = served
    assert client.get("/items/p3").json() == {"item_id": "p3", "title": "product p3"}
    missing = client.get("/items/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    health = client.get("/health").json()
    assert {key: health[key] for key in ("status", "index_version", "num_items", "swaps")} == {
        "status": "ok", "index_version": "v1", "num_items": 50, "swaps": 0}
    assert health["retrievals"] == ["dense"] and health["rerankers"] == [] and health["experiment"] is None
    assert client.get("/openapi.json").status_code == 200


def test_a_server_error_is_a_500_without_traceback(served):
    client, _, _ = served
    response = client.post("/search", json={"query": "explode now"})
    assert response.status_code == 500
    assert response.json()["detail"] == "internal server error" and response.json()["request_id"]
    assert "Traceback" not in response.text and "RuntimeError" not in response.text
    assert 'endpoint="/search",status="500"' in client.get("/metrics").text


def test_hot_swap_serves_the_new_index_and_invalidates_cached_results(served):
    client, app, _ = served
    first = client.post("/search", json={"query": "red dress", "k": 4}).json()
    vectors, ids, records = catalogue(1, num=30)
    app.state.swap(build_version("v2", vectors, ids, records))
    after = client.post("/search", json={"query": "red dress", "k": 4}).json()
    assert after["index_version"] == "v2" and not after["cached"]
    assert [i["item_id"] for i in after["items"]] == brute_force(vectors, ids, "red dress", 4) != \
        [i["item_id"] for i in first["items"]]
    assert client.get("/health").json()["swaps"] == 1
    metrics = client.get("/metrics").text
    assert 'mmq_index_info{version="v2"} 1.0' in metrics and 'version="v1"' not in metrics


def test_swap_during_concurrent_searches_loses_no_request_and_mixes_no_versions():
    versions = {name: catalogue(seed) for name, seed in (("v1", 0), ("v2", 1))}
    engine = SearchEngine(fake_encoder, build_version("v1", *versions["v1"]), result_cache_size=4)
    queries = [f"query {i}" for i in range(40)]
    answers, errors = [], []

    def worker():
        try:
            for query in queries:
                result = engine.search(query, 3)
                answers.append((query, result.version, [item["item_id"] for item in result.items]))
        except Exception as error:  # pragma: no cover - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        engine.swap(build_version("v2", *versions["v2"]))
        engine.swap(build_version("v1", *versions["v1"]))
    for thread in threads:
        thread.join()
    assert not errors and len(answers) == 4 * len(queries)
    for query, version, items in answers:       # each answer is exactly the brute force of the version it names
        vectors, ids, _ = versions[version]
        assert items == brute_force(vectors, ids, query, 3)


def test_bad_index_versions_are_refused():
    vectors, ids, records = catalogue(0)
    bad = vectors.copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_version("bad", bad, ids)
    with pytest.raises(ValueError, match="non-empty"):
        build_version("bad", vectors[:3], ids)
    engine = SearchEngine(fake_encoder, build_version("v1", vectors, ids, records))
    with pytest.raises(ValueError, match="dim"):
        engine.swap(build_version("wide", np.ones((2, DIM + 1), np.float32), ["a", "b"]))
    with pytest.raises(ValueError, match="duplicate"):
        build_version("dup", vectors[:2], ["a", "a"])


def test_serving_config_refuses_other_interfaces_and_unknown_keys(tmp_path):
    from baselines.serving.config import ServingConfig
    from mmq.config import ConfigError, load_config

    assert load_config(ServingConfig, "baselines/serving/myntra_search.yaml").host == "127.0.0.1"
    with pytest.raises(ValueError, match="loopback"):
        ServingConfig(host="0.0.0.0")
    bad = tmp_path / "bad.yaml"
    bad.write_text("index_factroy: HNSW32\n")
    with pytest.raises(ConfigError, match="index_factroy"):
        load_config(ServingConfig, bad)


def test_real_two_tower_engine_serves_a_query():
    """Smoke test on the chapter-2 run folder when its git-ignored weights exist here (skips otherwise)."""
    from baselines.serving.config import ServingConfig, load_engine
    from mmq import registry

    config = ServingConfig()
    import baselines  # noqa: F401
    directory = registry.run_directory(config.search_run, config.seed)
    if not (directory / "best.pt").exists() or not (directory / "product_embeddings.npy").exists():
        pytest.skip("the chapter-2 two-tower weights are not here (git-ignored)")
    try:
        engine = load_engine(config)
    except FileNotFoundError as error:   # the Myntra data directory is absent
        pytest.skip(str(error))
    client = TestClient(create_app(engine))
    body = client.post("/search", json={"query": "men navy blue casual shirt", "k": 5}).json()
    assert len(body["items"]) == 5 and all("shirt" in item["text"].lower() for item in body["items"][:3])


def test_bounded_loopback_load_test_with_a_hot_swap_loses_nothing(served):
    from baselines.serving.loadtest import LoopbackServer, run_load_test

    _, app, _ = served
    vectors, ids, records = catalogue(2)
    new = build_version("v2", vectors, ids, records)
    with LoopbackServer(app) as server:
        rows = run_load_test(server.url, [f"q{i}" for i in range(30)], concurrency_levels=[1, 3], max_requests=40,
                             seconds=20, on_halfway=lambda: app.state.swap(new), swap_level=3)
    assert [row["requests"] for row in rows] == [40, 40]                  # bounded by the request count
    assert all(row["status_codes"] == {200: 40} and not row["client_errors"] for row in rows)
    assert rows[1]["hot_swap_during"] and set(rows[1]["index_versions"]) == {"v1", "v2"}
    assert rows[0]["p50_ms"] <= rows[0]["p99_ms"]
    with pytest.raises(ValueError, match="127.0.0.1"):
        run_load_test("http://10.0.0.1:80", ["q"], max_requests=1)


def tiny_ann_report() -> dict:
    family = {"family": "IVF", "factory": "IVF4,Flat", "points": [{"setting": "nprobe=1", "recall": 0.9, "qps": 100.0}],
              "pareto": ["nprobe=1"], "operating_point": {"setting": "nprobe=1", "recall": 0.9, "qps": 100.0},
              "latency": {"p50_ms": 0.1, "p99_ms": 0.2, "histogram_log10_ms": {"counts": [1], "edges": [-1.0, 0.0]}},
              "batching": [{"batch_size": 1, "qps": 100.0}], "bytes_per_vector": 64.0, "build_s": 1.0}
    return {"corpora": {"real": {"num_vectors": 10, "flat": {"qps": 50.0}, "families": [family]}}}


def test_dashboard_shows_the_benchmark_and_live_latency():
    vectors, ids, records = catalogue(0)
    engine = SearchEngine(fake_encoder, build_version("v1", vectors, ids, records))
    client = TestClient(create_app(engine, dashboard_report=tiny_ann_report()))
    for query in ("a", "b", "a"):
        client.post("/search", json={"query": query})
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Live request latency (served API)" in page.text and 'id="panel-4"' in page.text
    assert '"name":"total"' in page.text and '"name":"embed"' in page.text     # the live stages
    assert client.get("/dashboard").text.count("Plotly.newPlot") >= 5
    bare = TestClient(create_app(SearchEngine(fake_encoder, build_version("v1", vectors, ids, records))))
    assert bare.get("/dashboard").status_code == 404

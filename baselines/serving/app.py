"""The REST API (FastAPI): POST /search, POST /recommend, GET /items/{item_id}, GET /health, GET /metrics,
GET /dashboard; OpenAPI at /docs.

Requests are validated by pydantic (an empty or whitespace-only query, a query over ``max_query_chars``, ``k``
outside [1, ``max_k``], an unknown pipeline or backend name, an empty or overlong history and wrong types get a 422
naming the field; a stage this server does not load and history item ids it does not know are a 422 naming them);
an unknown item id in GET /items is a 404; any other error is a 500 with a request id and no traceback.

POST /search runs a pipeline (``retrieval`` dense | multiphase, optional ``rerank``; the server's default unless the
request names one). With an A/B experiment configured, a request carrying a ``user_id`` and no explicit pipeline is
routed to the arm its hash assigns (:class:`baselines.serving.ab.Experiment`), the exposure is logged (one JSON line:
experiment, unit, arm, pipeline, request id, latency) and the response names the arm.

Prometheus metrics (their own registry per app): a latency histogram per stage (embed, retrieve, rerank, total) and
per A/B arm, requests by endpoint and status code, cache hits and misses, the index version. Each request logs one
JSON line (request id, endpoint, status, stage timings).
"""

# No ``from __future__ import annotations`` here: FastAPI must see the request model class defined inside
# ``create_app``, not the string of its name.
import json
import logging
import time
import uuid
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field, field_validator

from baselines.serving.engine import (SearchEngine, StageUnavailableError, UnknownItemError, parse_pipeline,
                                      pipeline_name)

LOGGER = logging.getLogger("mmq.serving")
STAGES = ("embed", "retrieve", "rerank", "total")
BUCKETS_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The app's Prometheus collectors (one registry per app, so several apps can coexist in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("mmq_stage_latency_seconds", "Latency per search stage", ["stage"],
                                 buckets=BUCKETS_SECONDS, registry=self.registry)
        self.requests = Counter("mmq_requests_total", "Requests by endpoint and status code", ["endpoint", "status"],
                                registry=self.registry)
        self.cache = Counter("mmq_cache_total", "Cache lookups by cache and outcome", ["cache", "outcome"],
                             registry=self.registry)
        self.version = Gauge("mmq_index_info", "The index version being served (value 1)", ["version"],
                             registry=self.registry)
        self.arm_latency = Histogram("mmq_arm_latency_seconds", "Search latency per A/B arm", ["experiment", "arm"],
                                     buckets=BUCKETS_SECONDS, registry=self.registry)
        self.recommend_latency = Histogram("mmq_recommend_latency_seconds", "Recommendation latency per backend",
                                           ["backend"], buckets=BUCKETS_SECONDS, registry=self.registry)


def search_request_model(max_query_chars: int, max_k: int) -> type[BaseModel]:
    """The POST /search body, with the configured limits."""

    class SearchRequest(BaseModel):
        query: str = Field(..., description="free-text query", max_length=max_query_chars)
        k: int = Field(10, ge=1, le=max_k, description=f"results to return, 1..{max_k}")
        pipeline: Optional[str] = Field(None, description="'<dense|multiphase>[+<lightgbm|lightgbm_ce>]'; "
                                                          "default: the server's (or the A/B arm's)")
        user_id: Optional[str] = Field(None, max_length=128, description="A/B unit: routes to the user's arm")

        @field_validator("pipeline")
        @classmethod
        def known_pipeline(cls, value):
            if value is not None:
                parse_pipeline(value)
            return value

        @field_validator("query")
        @classmethod
        def not_blank(cls, value: str) -> str:
            cleaned = " ".join(value.split())
            if not cleaned:
                raise ValueError("query is empty (only whitespace)")
            return cleaned

    return SearchRequest


def recommend_request_model(max_k: int, max_history: int, backends: tuple[str, ...]) -> type[BaseModel]:
    """The POST /recommend body."""

    class RecommendRequest(BaseModel):
        history: list[str] = Field(..., min_length=1, max_length=max_history,
                                   description=f"the user's item ids, oldest first (1..{max_history})")
        k: int = Field(10, ge=1, le=max_k, description=f"items to return, 1..{max_k}")
        backend: Optional[str] = Field(None, description=f"one of {list(backends)} (default: {backends[:1]})")

        @field_validator("backend")
        @classmethod
        def known_backend(cls, value):
            if value is not None and value not in backends:
                raise ValueError(f"unknown backend {value!r}; this server loads {list(backends)}")
            return value

    return RecommendRequest


def live_latency_figure(metrics: Metrics):
    """A plotly bar chart of the served requests per latency bucket and stage (from the Prometheus histogram)."""
    import plotly.graph_objects as go

    counts: dict[str, list[tuple[float, float]]] = {}
    for family in metrics.registry.collect():
        if family.name != "mmq_stage_latency_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels["le"] != "+Inf":
                counts.setdefault(sample.labels["stage"], []).append((float(sample.labels["le"]), sample.value))
    figure = go.Figure()
    for stage, buckets in counts.items():
        buckets.sort()
        per_bucket = [value - previous for (_, value), (_, previous) in zip(buckets, [(0.0, 0.0), *buckets[:-1]])]
        figure.add_trace(go.Bar(x=[f"<= {edge * 1e3:g} ms" for edge, _ in buckets], y=per_bucket, name=stage))
    figure.update_layout(barmode="group", height=360, template="plotly_white", yaxis_title="requests",
                         margin={"l": 50, "r": 20, "t": 30, "b": 40})
    return figure


def create_app(engine: SearchEngine, *, max_query_chars: int = 256, max_k: int = 100,
               dashboard_report: dict | None = None, pipeline: str = "dense", experiment=None, arm_pipelines=None,
               exposure_log=None, recommenders: dict | None = None, max_history: int = 200) -> FastAPI:
    """The API over ``engine``.

    ``pipeline``: the default search pipeline. ``experiment`` (an :class:`baselines.serving.ab.Experiment`) with
    ``arm_pipelines`` (arm -> pipeline) routes requests that carry a ``user_id``; ``exposure_log`` (an
    :class:`~baselines.serving.ab.ExposureLog`) records each routed request. ``recommenders`` (backend name ->
    :class:`baselines.serving.recommend.Recommender`, the first is the default) enables POST /recommend.
    ``dashboard_report`` (the chapter-3 ``ann_scale`` metrics) enables GET /dashboard: the chapter-3 dashboard plus
    a live panel of this server's request latencies.
    """
    parse_pipeline(pipeline)
    if experiment is not None:
        missing = set(experiment.arms) - set(arm_pipelines or {})
        if missing:
            raise ValueError(f"A/B arms {sorted(missing)} have no pipeline")
        for spec in arm_pipelines.values():
            parse_pipeline(spec)
    app = FastAPI(title="mmq search API", version="1")
    metrics = Metrics()
    metrics.version.labels(engine.current.version).set(1)
    app.state.engine, app.state.metrics = engine, metrics
    SearchRequest = search_request_model(max_query_chars, max_k)
    recommenders = dict(recommenders or {})
    RecommendRequest = recommend_request_model(max_k, max_history, tuple(recommenders) or ("none",))

    @app.middleware("http")
    async def count_and_log(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id, request.state.timings = request_id, {}
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:                                  # never leak a traceback to the client
            LOGGER.exception("request %s failed", request_id)
            response = JSONResponse({"detail": "internal server error", "request_id": request_id}, status_code=500)
        endpoint = request.scope.get("route").path if request.scope.get("route") else request.url.path
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        response.headers["x-request-id"] = request_id
        LOGGER.info(json.dumps({"request_id": request_id, "endpoint": endpoint, "status": response.status_code,
                                "ms": round((time.perf_counter() - started) * 1e3, 3), **request.state.timings}))
        return response

    @app.post("/search")
    def search(body: SearchRequest, request: Request) -> dict:
        arm = None
        spec = body.pipeline or pipeline
        if experiment is not None and body.user_id is not None and body.pipeline is None:
            arm = experiment.assign(body.user_id)
            spec = arm_pipelines[arm]
        retrieval, rerank = parse_pipeline(spec)
        try:
            result = engine.search(body.query, body.k, retrieval=retrieval, rerank=rerank)
        except StageUnavailableError as error:
            return JSONResponse({"detail": str(error)}, status_code=422)
        for stage in STAGES:
            metrics.latency.labels(stage).observe(result.timings_ms[stage] / 1e3)
        metrics.cache.labels("result", "hit" if result.result_cached else "miss").inc()
        if not result.result_cached:
            metrics.cache.labels("embedding", "hit" if result.embedding_cached else "miss").inc()
        if arm is not None:
            metrics.arm_latency.labels(experiment.name, arm).observe(result.timings_ms["total"] / 1e3)
            if exposure_log is not None:
                exposure_log.log(experiment, body.user_id, arm, pipeline=spec, request_id=request.state.request_id,
                                 query=body.query, total_ms=round(result.timings_ms["total"], 3))
        request.state.timings = {f"{stage}_ms": round(value, 3) for stage, value in result.timings_ms.items()}
        return {"query": body.query, "k": body.k, "index_version": result.version,
                "pipeline": pipeline_name(result.retrieval, result.rerank), "arm": arm, "items": result.items,
                "timings_ms": result.timings_ms, "cached": result.result_cached,
                "request_id": request.state.request_id}

    @app.post("/recommend")
    def recommend(body: RecommendRequest, request: Request) -> dict:
        if not recommenders:
            return JSONResponse({"detail": "this server loads no recommender (set recommenders in the serving "
                                           "YAML)"}, status_code=404)
        backend = body.backend or next(iter(recommenders))
        try:
            result = recommenders[backend].recommend(body.history, body.k)
        except UnknownItemError as error:
            return JSONResponse({"detail": f"unknown item ids in history: {error.args[0]!r}"}, status_code=422)
        except ValueError as error:
            return JSONResponse({"detail": str(error)}, status_code=422)
        metrics.recommend_latency.labels(backend).observe(result.timings_ms["total"] / 1e3)
        request.state.timings = {f"{stage}_ms": round(value, 3) for stage, value in result.timings_ms.items()}
        return {"backend": backend, "version": result.version, "k": body.k, "items": result.items,
                "complete": bool(getattr(result, "complete", True)), "timings_ms": result.timings_ms,
                "request_id": request.state.request_id}

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict:
        try:
            return engine.item(item_id)
        except UnknownItemError:
            return JSONResponse({"detail": f"unknown item id {item_id!r}"}, status_code=404)

    @app.get("/health")
    def health() -> dict:
        current = engine.current
        return {"status": "ok", "index_version": current.version, "num_items": len(current.item_ids),
                "swaps": engine.swaps, "pipeline": pipeline, "retrievals": list(current.retrievals),
                "rerankers": sorted(current.rerankers), "recommenders": list(recommenders),
                "experiment": None if experiment is None else {"name": experiment.name, "arms": arm_pipelines,
                                                               "split": list(experiment.split)}}

    @app.get("/dashboard")
    def dashboard() -> Response:
        if dashboard_report is None:
            return JSONResponse({"detail": "no chapter-3 report configured for the dashboard"}, status_code=404)
        from baselines.faiss_ann.dashboard import render_dashboard

        html = render_dashboard(dashboard_report, title="ANN benchmark + live API latency",
                                subtitle=f"index {engine.current.version}", live_panel=live_latency_figure(metrics))
        return Response(html, media_type="text/html")

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def swap(new_version) -> None:
        """Hot-swap the index and update the version gauge."""
        old = engine.swap(new_version)
        metrics.version.remove(old.version)
        metrics.version.labels(new_version.version).set(1)

    app.state.swap = swap
    return app

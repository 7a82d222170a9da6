"""Serve the search API on a loopback address (uvicorn).

    python scripts/serve.py [baselines/serving/myntra_search.yaml] [--port 8000] [--workers 1]
                            [--encoder torch] [--index-factory Flat] [--pad-to 0]

Loads the models, index and optional stages (multiphase, rerankers, recommenders, an A/B experiment) named by the
serving YAML once per worker, then serves POST /search, POST /recommend, GET /items/{id}, GET /health, GET /metrics,
GET /dashboard (chapter 3's benchmark + live latency) and the OpenAPI docs at /docs until interrupted. The flags
override the YAML (``--pad-to`` is for benchmarks: synthetic products up to that catalogue size). With
``--workers`` > 1 each uvicorn worker process builds its own app (``baselines.serving.asgi:build``); metrics and
caches are then per worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import uvicorn

import baselines  # noqa: F401  (registers the run kinds the serving YAML names)
from baselines.serving.asgi import CONFIG_VARIABLE, OVERRIDES_VARIABLE, serving_config
from baselines.serving.config import create_served_app
from mmq.cli import setup

DEFAULT = "baselines/serving/myntra_search.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=DEFAULT)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--encoder", default=None, help="query encoder kind (baselines.serving.encoders.KINDS)")
    parser.add_argument("--index-factory", default=None, help="faiss factory string, e.g. HNSW32")
    parser.add_argument("--pad-to", type=int, default=None, help="benchmark only: pad the catalogue to this size")
    arguments = parser.parse_args(argv)
    setup()
    overrides = {key: value for key, value in (("port", arguments.port), ("workers", arguments.workers),
                                               ("query_encoder", arguments.encoder),
                                               ("index_factory", arguments.index_factory),
                                               ("pad_to", arguments.pad_to)) if value is not None}
    config = serving_config(arguments.config, overrides)        # validated before any worker starts
    logging.getLogger("mmq.serving").setLevel(logging.INFO)
    if config.workers == 1:
        uvicorn.run(create_served_app(config), host=config.host, port=config.port, workers=1, log_level="warning")
    else:
        os.environ[CONFIG_VARIABLE], os.environ[OVERRIDES_VARIABLE] = arguments.config, json.dumps(overrides)
        uvicorn.run("baselines.serving.asgi:build", factory=True, host=config.host, port=config.port,
                    workers=config.workers, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

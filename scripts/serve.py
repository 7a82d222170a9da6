"""Serve the search API on a loopback address (uvicorn, one worker).

    python scripts/serve.py [baselines/serving/myntra_search.yaml] [--port 8000]

Loads the models, index and optional stages (multiphase, rerankers, recommenders, an A/B experiment) named by the
serving YAML once, then serves POST /search, POST /recommend, GET /items/{id},
GET /health, GET /metrics, GET /dashboard (chapter 3's benchmark + live latency) and the OpenAPI docs at /docs
until interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import uvicorn

import baselines  # noqa: F401  (registers the run kinds the serving YAML names)
from baselines.serving.config import ServingConfig, create_served_app
from mmq.cli import setup
from mmq.config import load_config

DEFAULT = "baselines/serving/myntra_search.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=DEFAULT)
    parser.add_argument("--port", type=int, default=None)
    arguments = parser.parse_args(argv)
    setup()
    config = load_config(ServingConfig, arguments.config)
    if arguments.port is not None:
        config = dataclasses.replace(config, port=arguments.port)
    app = create_served_app(config)
    logging.getLogger("mmq.serving").setLevel(logging.INFO)
    uvicorn.run(app, host=config.host, port=config.port, workers=1, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: bounded loopback load test of the search API (uncached and cached queries, a hot swap under load).

    python scripts/bench_serving.py [--max-requests 600] [--seconds 15] [--levels 1 4 16]
        [--encoder torch] [--index-factory Flat] [--pad-to 0] [--workers 1] [--output reports/bench_serving.json]

Serves baselines/serving/myntra_search.yaml (the chapter-2 two-tower over 44k Myntra products; its run must exist
with weights) as a child process (scripts/serve.py, one uvicorn worker, 127.0.0.1), then per concurrency level sends
at most --max-requests requests for at most --seconds: first distinct chapter-2 test queries (a disjoint slice per
level, so every request encodes its query), then 50 warmed queries (result-cache hits). Then, in-process, a hot swap
halfway through a concurrency-4 run (same vectors, a new version) must lose no request. Prints the machine, load
average and a table; writes the JSON report. Run it with no other job on the cores. ``--encoder`` /
``--index-factory`` / ``--pad-to`` / ``--workers`` override the serving YAML (``--pad-to 100000``: issue 18's
100k-item goal on synthetic padding from a mixture fitted to the real product embeddings).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys

import baselines  # noqa: F401
from baselines.faiss_ann.scale import machine
from baselines.serving.app import create_app
from baselines.serving.config import ServingConfig, load_engine
from baselines.serving.engine import build_version
from baselines.serving.loadtest import LoopbackServer, SubprocessServer, free_port, run_load_test
from baselines.two_tower.search import load_benchmark, query_texts
from mmq import artifacts, registry
from mmq.cli import setup
from mmq.config import load_config
from mmq.runs import REPOSITORY_ROOT

CONFIG = "baselines/serving/myntra_search.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-requests", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--encoder", default="torch")
    parser.add_argument("--index-factory", default=None)
    parser.add_argument("--pad-to", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output", default="reports/bench_serving.json")
    arguments = parser.parse_args(argv)
    setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mmq.serving").setLevel(logging.WARNING)
    overrides = {"query_encoder": arguments.encoder, "pad_to": arguments.pad_to, "workers": arguments.workers}
    if arguments.index_factory:
        overrides["index_factory"] = arguments.index_factory
    config = load_config(ServingConfig, CONFIG, **overrides)
    engine = load_engine(config)
    app = create_app(engine, max_query_chars=config.max_query_chars, max_k=config.max_k)
    _, search_config = registry.load_experiment(config.search_run)
    benchmark, _, _ = load_benchmark(search_config)
    # distinct queries for the uncached rows: every level gets its own slice, and a slice must not run out (the load
    # test cycles through its queries, so a short slice would turn into cache hits): test, then valid, then train
    queries = list(dict.fromkeys(query_texts(benchmark.split("test"))[0] + query_texts(benchmark.split("valid"))[0]
                                 + query_texts(benchmark.split("train"))[0]))
    needed = arguments.max_requests * len(arguments.levels)
    if len(queries) < needed:
        raise SystemExit(f"{len(queries)} distinct queries cannot give {len(arguments.levels)} levels "
                         f"{arguments.max_requests} uncached requests each; lower --max-requests")
    first = engine.current
    swapped = build_version(f"{first.version}-swapped", first.index.reconstruct_n(0, first.index.ntotal),
                            first.item_ids, first.records, factory=config.index_factory)
    before = machine()
    rows = []
    port = free_port()
    command = [sys.executable, str(REPOSITORY_ROOT / "scripts" / "serve.py"), CONFIG, "--port", str(port),
               "--encoder", config.query_encoder, "--index-factory", config.index_factory, "--pad-to",
               str(config.pad_to), "--workers", str(config.workers)]
    with SubprocessServer(command, port) as server:
        for position, level in enumerate(arguments.levels):
            distinct = queries[position * arguments.max_requests:(position + 1) * arguments.max_requests]
            for row in run_load_test(server.url, distinct or queries, concurrency_levels=[level],
                                     max_requests=arguments.max_requests, seconds=arguments.seconds):
                rows.append({"queries": "uncached (distinct test queries)", **row})
        warm = queries[-50:]
        run_load_test(server.url, warm, concurrency_levels=[1], max_requests=50, seconds=arguments.seconds)
        for row in run_load_test(server.url, warm, concurrency_levels=arguments.levels,
                                 max_requests=arguments.max_requests, seconds=arguments.seconds):
            rows.append({"queries": "cached (50 warmed queries)", **row})
    with LoopbackServer(app) as server:                 # the swap needs the app object: in-process
        for row in run_load_test(server.url, queries, concurrency_levels=[4], max_requests=200,
                                 seconds=arguments.seconds, on_halfway=lambda: app.state.swap(swapped), swap_level=4):
            rows.append({"queries": "hot swap under load (in-process server)", **row})
    after = machine()
    report = {"machine_before": before, "machine_after": after, "python": platform.python_version(),
              "catalogue": len(first.item_ids), "index_factory": config.index_factory, "threads": config.num_threads,
              "query_encoder": config.query_encoder, "padded_to": config.pad_to, "workers": config.workers,
              "max_requests": arguments.max_requests, "seconds": arguments.seconds, "rows": rows}
    path = REPOSITORY_ROOT / arguments.output
    artifacts.write_json(path, report)
    print(f"machine: {before['cpu']}, {before['cores']} cores; load average before {before['load_average']}, "
          f"after {after['load_average']}; {len(first.item_ids):,} products"
          f"{' (real + synthetic padding)' if config.pad_to else ''}, {config.index_factory}, query encoder {config.query_encoder}, {config.num_threads} torch/faiss thread "
          f"per worker; {config.workers} uvicorn worker(s) on 127.0.0.1 (client: this process)")
    print("| queries | clients | requests | req/s | p50 ms | p95 ms | p99 ms | codes | client errors | swap |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    for row in rows:
        print(f"| {row['queries']} | {row['concurrency']} | {row['requests']} | {row['requests_per_second']:,.1f} | "
              f"{row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {row['status_codes']} | "
              f"{row['client_errors'] or 0} | {'yes' if row['hot_swap_during'] else ''} |")
    print(f"wrote {path}")
    return 0 if all(not row["client_errors"] and set(row["status_codes"]) == {200} for row in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())

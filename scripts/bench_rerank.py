"""Per-query latency of each stage of the chapter-4 two-stage pipeline (a benchmark, not a test).

    python scripts/bench_rerank.py [--seed 0] [--queries 200] [--threads 1]

Reads finished runs (the chapter-2 two-tower and the chapter-4 rerank run of ``--seed``; never trains), then serves
``--queries`` test queries one at a time, as an API would: query encoding (MiniLM + head), FAISS top-N search,
LightGBM feature building + scoring of N = 100, and cross-encoder scoring of N = 20, 50, 100. Prints p50 / p99 per
stage with the machine and the load average, and writes reports/bench_rerank.json (read by the chapter-4 table).
Run it with no training job sharing the cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import baselines  # noqa: F401
from mmq.cli import setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch / faiss / LightGBM threads (1: one worker)")
    parser.add_argument("--output", default="reports/bench_rerank.json")
    arguments = parser.parse_args(argv)
    setup()
    import faiss
    import lightgbm
    import torch
    from sentence_transformers import CrossEncoder

    from baselines.reranker import rerank
    from baselines.two_tower import search
    from mmq import artifacts, registry

    torch.set_num_threads(arguments.threads)
    faiss.omp_set_num_threads(arguments.threads)
    config_path = "experiments/ch4/myntra_rerank.yaml"
    if not registry.is_done(config_path, arguments.seed):
        raise SystemExit(f"{config_path} seed {arguments.seed} is not finished: run "
                         f"`python scripts/run.py {config_path} --seeds {arguments.seed}` first")
    _, config = registry.load_experiment(config_path)
    directory = registry.run_directory(config_path, arguments.seed)
    stage1 = rerank.load_stage1(config, arguments.seed, progress=False)
    benchmark, texts, _ = search.load_benchmark(stage1.config)
    builder = rerank.FeatureBuilder(benchmark.attributes, texts)
    booster = lightgbm.Booster(model_file=str(directory / rerank.LIGHTGBM_FILE))
    cross_encoder = CrossEncoder(str(directory / rerank.CROSS_ENCODER_DIR), device="cpu")
    queries = [query.text for query in benchmark.split("test")[:arguments.queries]]
    timings: dict[str, list[float]] = {name: [] for name in (
        "query encoding (MiniLM + head)", "FAISS top-100 (exact, 44k products)", "LightGBM features + scoring, N=100",
        "cross-encoder, N=20", "cross-encoder, N=50", "cross-encoder, N=100", "two-stage total (encode + search + LightGBM)")}
    names = list(timings)
    for warmup in range(2):
        stage1.search([queries[0]], 100)
        cross_encoder.predict([(queries[0], texts[0])] * 20, batch_size=128, show_progress_bar=False)
    for text in queries:
        start = time.perf_counter()
        vector = stage1.model.encode([text], "query")
        encoded = time.perf_counter()
        scores, items = stage1.index.search(vector, 100)
        searched = time.perf_counter()
        features = builder.build(text, items[0], scores[0])
        booster.predict(features, num_threads=arguments.threads)
        ranked = time.perf_counter()
        timings[names[0]].append(encoded - start)
        timings[names[1]].append(searched - encoded)
        timings[names[2]].append(ranked - searched)
        timings[names[6]].append(ranked - start)
        for position, n in ((3, 20), (4, 50), (5, 100)):
            started = time.perf_counter()
            cross_encoder.predict([(text, texts[item]) for item in items[0][:n]], batch_size=128, show_progress_bar=False)
            timings[names[position]].append(time.perf_counter() - started)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"faiss {faiss.__version__}, lightgbm {lightgbm.__version__}, {arguments.threads} thread(s)")
    stages = [{"stage": name, "p50_ms": round(float(np.percentile(values, 50)) * 1e3, 3),
               "p99_ms": round(float(np.percentile(values, 99)) * 1e3, 3),
               "mean_ms": round(float(np.mean(values)) * 1e3, 3)} for name, values in timings.items()]
    result = {"machine": machine, "load_average": round(os.getloadavg()[0], 2), "queries": len(queries),
              "seed": arguments.seed, "stages": stages}
    print(f"machine: {machine}; load average (1 min) {result['load_average']}; {len(queries)} test queries, one at a time")
    for stage in stages:
        print(f"  {stage['stage']:<48} p50 {stage['p50_ms']:8.2f} ms   p99 {stage['p99_ms']:8.2f} ms")
    ce100, lgbm = stages[5]["p50_ms"], stages[2]["p50_ms"]
    print(f"  cross-encoder N=100 / LightGBM N=100 (p50): {ce100 / lgbm:.1f}x")
    artifacts.write_json(arguments.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

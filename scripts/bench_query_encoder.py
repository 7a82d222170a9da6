"""Query-encoder latency, throughput and retrieval quality per runtime (a benchmark, not a test).

    python scripts/bench_query_encoder.py [--kinds torch torch_int8 onnx onnx_int8 static] [--queries 1000]
                                          [--threads 1] [--seed 0] [--output reports/bench_query_encoder.json]
    python scripts/bench_query_encoder.py --sweep     # the static encoder's settings, on VALID queries only

Reads the finished chapter-2 two-tower run (``experiments/ch2/myntra_two_tower.yaml``, never trains it) and builds
each kind of :mod:`baselines.serving.encoders` (the first build exports / distils and caches; later builds load).
Per kind: single-query latency p50 / p99 at ``--threads`` threads over ``--queries`` real test queries encoded one
at a time (as the server calls its encoder), batch throughput (the same queries in one call), and quality through
exact inner-product search over the run's own product embeddings (NDCG@10, recall@10 on valid and test, mean cosine
to the fp32 tower's query embeddings), with ratios against ``torch`` measured in the same process. Prints the
machine and the load average before and after (latency numbers are only comparable on idle cores) and writes
``--output`` atomically.

``--sweep`` trains the static encoder under a small grid of settings and scores VALID queries after every epoch
(test queries are never read); it writes reports/bench_query_encoder_sweep.json. The chosen settings are the
defaults of ``StaticSettings``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
from tqdm.auto import tqdm

import baselines  # noqa: F401  (registers the query_search kind)
from mmq.cli import setup

RUN = "experiments/ch2/myntra_two_tower.yaml"


def _load(seed: int):
    from baselines.two_tower.search import load_benchmark, load_two_tower
    from mmq import registry

    if not registry.is_done(RUN, seed):
        raise SystemExit(f"{RUN} seed {seed} is not finished: run `python scripts/run.py {RUN} --seeds {seed}` first")
    _, config = registry.load_experiment(RUN)
    model, products = load_two_tower(config, registry.run_directory(RUN, seed))
    benchmark, texts, _ = load_benchmark(config)
    return config, model, products, benchmark, texts


def _percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "mean_ms": round(float(values.mean()), 3)}


def bench_kind(kind: str, encode, queries: list[str], *, warmup: int = 20) -> dict:
    for text in queries[:warmup]:
        encode([text])
    single = []
    for text in tqdm(queries, desc=f"{kind}: one query at a time", leave=False):
        started = time.perf_counter()
        vector = encode([text])
        single.append(time.perf_counter() - started)
        assert vector.shape[0] == 1
    started = time.perf_counter()
    encode(queries)
    batch_seconds = time.perf_counter() - started
    return {"single_query": _percentiles(single), "single_query_per_second": round(len(queries) / sum(single), 1),
            "batch_queries_per_second": round(len(queries) / batch_seconds, 1)}


def run_benchmark(arguments: argparse.Namespace) -> dict:
    import faiss
    import torch

    from baselines.faiss_ann.scale import machine
    from baselines.serving import encoders
    from baselines.two_tower.search import query_texts
    from mmq import artifacts

    load_before = [round(value, 2) for value in os.getloadavg()]
    torch.set_num_threads(arguments.threads)
    faiss.omp_set_num_threads(arguments.threads)
    config, model, products, benchmark, product_texts = _load(arguments.seed)
    queries = query_texts(benchmark.split("test")[:arguments.queries])[0]
    kinds = ["torch", *[kind for kind in arguments.kinds if kind != "torch"]]
    rows: dict[str, dict] = {}
    reference: dict[str, np.ndarray] = {}
    for kind in kinds:
        started = time.perf_counter()
        try:
            encode = encoders.load_query_encoder(kind, model, config, num_threads=arguments.threads,
                                                 benchmark=benchmark, product_texts=product_texts, progress=True)
        except ImportError as error:   # onnxruntime / model2vec absent: say so, keep the other kinds
            rows[kind] = {"skipped": f"{type(error).__name__}: {error}"}
            print(f"{kind}: skipped ({error})")
            continue
        build_seconds = time.perf_counter() - started
        row = {"build_seconds": round(build_seconds, 2), **bench_kind(kind, encode, queries)}
        faiss.omp_set_num_threads(arguments.threads)
        for split in ("valid", "test"):
            quality, embeddings = encoders.retrieval_quality(encode, benchmark, split, products,
                                                             reference=reference.get(split))
            if kind == "torch":
                reference[split] = embeddings
                quality["mean_cosine"] = round(float((embeddings * embeddings).sum(axis=1).mean()), 6)
            row[split] = quality
        rows[kind] = row
        print(f"{kind}: p50 {row['single_query']['p50_ms']:.3f} ms, valid ndcg@10 {row['valid']['ndcg@10']:.4f}, "
              f"test ndcg@10 {row['test']['ndcg@10']:.4f} (built in {build_seconds:.1f} s)", flush=True)
    base = rows["torch"]
    for kind, row in rows.items():
        if "skipped" in row:
            continue
        row["vs_torch"] = {
            "p50_speedup": round(base["single_query"]["p50_ms"] / row["single_query"]["p50_ms"], 2),
            "p99_speedup": round(base["single_query"]["p99_ms"] / row["single_query"]["p99_ms"], 2),
            "batch_throughput_ratio": round(row["batch_queries_per_second"] / base["batch_queries_per_second"], 2),
            **{f"{split}_ndcg@10_delta": round(row[split]["ndcg@10"] - base[split]["ndcg@10"], 4)
               for split in ("valid", "test")}}
    load_after = [round(value, 2) for value in os.getloadavg()]
    import onnxruntime

    info = machine()
    info.update(torch=torch.__version__, onnxruntime=onnxruntime.__version__, threads=arguments.threads)
    result = {"run": RUN, "seed": arguments.seed, "queries": len(queries), "machine": info,
              "load_average_before": load_before, "load_average_after": load_after, "kinds": rows,
              "note": "latency is only comparable on idle cores: see the load averages"}
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores, torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, {arguments.threads} thread(s); load average (1/5/15 min) before {load_before}, "
          f"after {load_after}")
    print(f"{len(queries)} test queries one at a time; quality: exact IP search over the run's product embeddings\n")
    header = (f"{'kind':<11} {'p50 ms':>8} {'p99 ms':>8} {'x torch':>8} {'batch q/s':>10} {'x torch':>8} "
              f"{'valid nDCG':>10} {'test nDCG':>10} {'valid R@10':>10} {'test R@10':>10} {'cos':>7}")
    print(header)
    print("-" * len(header))
    for kind, row in rows.items():
        if "skipped" in row:
            print(f"{kind:<11} skipped: {row['skipped']}")
            continue
        print(f"{kind:<11} {row['single_query']['p50_ms']:8.3f} {row['single_query']['p99_ms']:8.3f} "
              f"{row['vs_torch']['p50_speedup']:7.1f}x {row['batch_queries_per_second']:10.0f} "
              f"{row['vs_torch']['batch_throughput_ratio']:7.1f}x {row['valid']['ndcg@10']:10.4f} "
              f"{row['test']['ndcg@10']:10.4f} {row['valid']['recall@10']:10.4f} {row['test']['recall@10']:10.4f} "
              f"{row['test']['mean_cosine']:7.4f}")
    artifacts.write_json(arguments.output, result)
    print(f"\nwrote {arguments.output}")
    return result


# The static settings tried on VALID queries (each scored after every epoch up to --sweep-epochs).
SWEEP = (
    {"vocabulary": "subword", "head": "tower", "learning_rate": 3e-4, "head_learning_rate": 1e-3},
    {"vocabulary": "subword", "head": "tower", "learning_rate": 1e-3, "head_learning_rate": 3e-3},
    {"vocabulary": "words", "head": "tower", "learning_rate": 1e-3, "head_learning_rate": 1e-3},
    {"vocabulary": "words", "head": "tower", "learning_rate": 3e-4, "head_learning_rate": 1e-3},
    {"vocabulary": "words", "head": "none", "learning_rate": 1e-3, "head_learning_rate": 1e-3},
)


def run_sweep(arguments: argparse.Namespace) -> dict:
    """The static encoder's settings on VALID queries only (every epoch up to ``--sweep-epochs``)."""
    import torch

    from baselines.serving import encoders
    from mmq import artifacts

    torch.set_num_threads(2)
    config, model, products, benchmark, product_texts = _load(arguments.seed)
    texts = encoders.static_training_texts(benchmark, product_texts)
    _, reference = encoders.retrieval_quality(encoders.load_query_encoder("torch", model, config, num_threads=2),
                                              benchmark, "valid", products)
    distilled = {}
    rows = []
    for overrides in SWEEP:
        settings = dataclasses.replace(encoders.StaticSettings(), epochs=arguments.sweep_epochs, **overrides)
        if settings.vocabulary not in distilled:
            distilled[settings.vocabulary] = encoders.distill_static(model, settings, texts)

        def score(epoch: int, encoder, overrides=overrides) -> None:
            quality, _ = encoders.retrieval_quality(encoder, benchmark, "valid", products, reference=reference)
            rows.append({**overrides, "epoch": epoch, **quality})
            print(" ".join(f"{name}={value}" for name, value in overrides.items()) + f" epoch {epoch:2d}: valid "
                  f"ndcg@10 {quality['ndcg@10']:.4f} recall@10 {quality['recall@10']:.4f} "
                  f"cos {quality['mean_cosine']:.4f}", flush=True)

        encoders.train_static(model, config, settings, texts, distilled=distilled[settings.vocabulary],
                              on_epoch=score, progress=False)
    best = max(rows, key=lambda row: row["ndcg@10"])
    print(f"best on valid: {best}")
    result = {"split": "valid", "grid": SWEEP, "rows": rows, "best": best}
    artifacts.write_json(arguments.sweep_output, result)
    return result


def main(argv: list[str] | None = None) -> int:
    from baselines.serving.encoders import KINDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--queries", type=int, default=1000, help="test queries timed one at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime / faiss threads")
    parser.add_argument("--seed", type=int, default=0, help="the two-tower run's seed")
    parser.add_argument("--output", default="reports/bench_query_encoder.json")
    parser.add_argument("--sweep", action="store_true", help="choose the static settings on valid queries instead")
    parser.add_argument("--sweep-epochs", type=int, default=3)
    parser.add_argument("--sweep-output", default="reports/bench_query_encoder_sweep.json")
    arguments = parser.parse_args(argv)
    setup()
    if arguments.sweep:
        run_sweep(arguments)
    else:
        run_benchmark(arguments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

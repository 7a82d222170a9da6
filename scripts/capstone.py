"""Chapter 10's capstone: the end-to-end search and recommendation system on the real data, from existing runs.

    python scripts/capstone.py            (make capstone; ~15 min on 2 idle cores when the runs exist)

Search: chapter 2's Myntra test queries through the served API (two-tower query tower -> multiphase retrieval over
RQ-KMeans semantic IDs -> chapter 4's reranker). Recommendation: Beauty leave-one-out users (MMQ stage-1 semantic
IDs -> multiphase retrieval -> the user two-tower reranks), also served through POST /recommend for the latency
guardrail. Both beside every single-system baseline, with paired intervals and an A/B replay per track.
Writes reports/capstone.{md,json,png}, reports/capstone_per_event.npz (committed) and reports/capstone.html
(interactive, git-ignored: it inlines plotly.js). Needs these finished runs (their weights are git-ignored):
experiments/ch2/myntra_two_tower.yaml, experiments/ch4/myntra_rerank.yaml, experiments/ch2/beauty_user_two_tower.yaml,
experiments/mmq/beauty_mmq.yaml, experiments/ch6/beauty_multiphase.yaml, experiments/ch6/beauty_generative_rq_kmeans.yaml.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import platform
import time
from pathlib import Path

import numpy as np

import baselines  # noqa: F401  (registers the run kinds)
from mmq import artifacts
from baselines.serving.capstone import GUARDRAIL_MAX_RATIO
from mmq.cli import setup

REPORTS = Path("reports")
COMMAND = "python scripts/capstone.py"
REQUIRED = ("experiments/ch2/myntra_two_tower.yaml", "experiments/ch4/myntra_rerank.yaml",
            "experiments/ch2/beauty_user_two_tower.yaml", "experiments/mmq/beauty_mmq.yaml",
            "experiments/ch6/beauty_multiphase.yaml", "experiments/ch6/beauty_generative_rq_kmeans.yaml")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def check_runs() -> None:
    from mmq import registry

    missing = [path for path in REQUIRED if not registry.is_done(path, 0)]
    if missing:
        raise SystemExit("the capstone builds on finished runs; missing: " + ", ".join(missing) + "\ntrain them: "
                         + "; ".join(f"python scripts/run.py {path} --seeds 0" for path in missing))


def served_recommend_ab(beauty: dict, *, users: int, salt: str, log_path: Path) -> dict:
    """Route the first ``users`` Beauty test users through POST /recommend by their A/B arm (control = the two-tower
    alone, treatment = the capstone pipeline): served latency per arm -> guardrail; the replay pairs every test
    user's NDCG@10 under both systems."""
    from fastapi.testclient import TestClient

    from baselines.serving.ab import Experiment, ExposureLog, guardrail, replay
    from baselines.serving.app import create_app
    from baselines.serving.capstone_beauty import load_beauty_pipeline
    from baselines.serving.engine import SearchEngine, build_version
    from baselines.serving.recommend import load_recommender
    from mmq.data import leave_one_out, load_dataset

    two_tower = load_recommender("two_tower", num_threads=1)
    pipeline = load_beauty_pipeline(candidates=beauty["settings"]["candidates"])
    catalogue = two_tower.catalogue
    # /search is not part of this track: a one-item placeholder index keeps the app's search side valid
    placeholder = SearchEngine(lambda texts: np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2),
                               build_version("none", np.ones((1, 2), dtype=np.float32) / np.sqrt(2), ["none"]))
    client = TestClient(create_app(placeholder, recommenders={"two_tower": two_tower, "capstone": pipeline},
                                   max_history=200))
    experiment = Experiment("capstone-recommend", salt, ("control", "treatment"), (0.5, 0.5))
    backend = {"control": "two_tower", "treatment": "capstone"}
    log = ExposureLog(log_path)
    histories, _ = leave_one_out(load_dataset("beauty"), max_history=20).history_and_target("test")
    served_ms: dict[str, list[float]] = {arm: [] for arm in experiment.arms}
    for user in range(min(20, len(histories))):                  # warm-up, not measured or logged
        for name in backend.values():
            client.post("/recommend", json={"history": [catalogue[item] for item in histories[user]], "k": 10,
                                            "backend": name})
    for user in range(min(users, len(histories))):
        arm = experiment.assign(str(user))
        history = [catalogue[item] for item in histories[user]]
        response = client.post("/recommend", json={"history": history, "k": 10, "backend": backend[arm]})
        if response.status_code != 200:
            raise RuntimeError(f"/recommend for test user {user} -> {response.status_code}: {response.text[:300]}")
        body = response.json()
        served_ms[arm].append(body["timings_ms"]["total"])
        log.log(experiment, str(user), arm, backend=backend[arm], request_id=body["request_id"],
                total_ms=round(body["timings_ms"]["total"], 3))
    per_user = beauty["per_user"]
    units = [str(user) for user in range(len(per_user["capstone"]["ndcg@10"]))]
    block = replay(experiment, units, {"control": per_user["two_tower"]["ndcg@10"],
                                       "treatment": per_user["capstone"]["ndcg@10"]})
    block["guardrail"] = guardrail({arm: np.asarray(values) for arm, values in served_ms.items()}, "control",
                                   max_ratio=GUARDRAIL_MAX_RATIO)
    block["guardrail_max_ratio"] = GUARDRAIL_MAX_RATIO
    block["arms"] = {"control": "two_tower (POST /recommend)", "treatment": "capstone pipeline (POST /recommend)"}
    block["served_users"] = min(users, len(histories))
    return {"ab": block}


def findings(report: dict) -> list[str]:
    """The report's conclusions, each computed from the numbers above it."""
    search, beauty = report["search"], report["beauty"]
    full, test = search["full_pipeline"], search["test"]
    claims = {row["claim"]: row for row in search["claims"] + beauty["claims"]}

    def said(label: str) -> str:
        row = claims[label]
        return f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}], {row['verdict']}"

    retrieve = {name: test[name]["latency_ms"]["retrieve"]["p50"] for name in ("dense", "multiphase")}
    lines = [f"- **Search, retrieval stage**: multiphase keeps {test['multiphase']['recall@100']:.3f} recall@100 of "
             f"dense's {test['dense']['recall@100']:.3f} ({said('search: multiphase recall@100 > dense recall@100')}) "
             f"at a retrieve p50 of {retrieve['multiphase']:.2f} ms vs {retrieve['dense']:.2f} ms (exact Flat over "
             f"{search['num_products']:,} products, 1 thread).",
             f"- **Search, full system** ({full}) vs the two-tower alone: "
             f"{said(f'search: {full} > dense (NDCG@10)')}; vs chapter 4's dense + LightGBM: "
             f"{said(f'search: {full} > dense+lightgbm (NDCG@10)')}."]
    if "lightgbm_ce" in full or "multiphase+lightgbm_ce" in test:
        ce = test.get("multiphase+lightgbm_ce", {}).get("latency_ms", {}).get("rerank", {}).get("p50")
        if ce is not None:
            lines.append(f"- The cross-encoder stage costs {ce:.0f} ms p50 per query on one CPU thread (50 pairs), "
                         "two orders of magnitude over every other stage; the A/B guardrail reads it.")
    stages = beauty["stages"]["test"]
    lines.append(f"- **Recommendation**: MMQ multiphase finds the target among its {beauty['settings']['candidates']} "
                 f"candidates for {stages['candidate_recall']:.3f} of users against "
                 f"{stages['two_tower_candidate_recall']:.3f} for the two-tower's own top "
                 f"{beauty['settings']['candidates']}; the full pipeline vs the two-tower alone: "
                 f"{said('recommend: capstone > two_tower (NDCG@10)')}. The content-side candidate set caps the "
                 "pipeline below the behavioural model alone, while it beats every content-only and generative "
                 "system. A system assembled from the course's parts is not automatically better than its best part.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-queries", type=int, default=None, help="a quick look: first queries per split only")
    parser.add_argument("--served-users", type=int, default=1000, help="Beauty test users routed through the API")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--tracks", type=Path, default=None,
                        help="debugging: pickle the tracks' results here, or reuse them when the file exists")
    arguments = parser.parse_args(argv)
    setup()
    for name in ("mmq.serving", "httpx", "httpx2"):     # one log line per API request would drown the progress
        logging.getLogger(name).setLevel(logging.WARNING)
    check_runs()
    from baselines.serving.ab import ExposureLog
    from baselines.serving.capstone import SearchTrackConfig, run_search_track
    from baselines.serving.capstone_beauty import run_beauty_track
    from baselines.serving.capstone_report import (beauty_claims, html_page, readme_block, render_markdown,
                                                   search_claims, summary_plot)
    from mmq.tables import write_readme_block

    progress = not arguments.no_progress
    started, load_before = time.perf_counter(), os.getloadavg()
    meta = None
    if arguments.tracks and arguments.tracks.exists():       # a debugging shortcut: the tracks of an earlier run
        with open(arguments.tracks, "rb") as handle:
            search, beauty, served, meta = pickle.load(handle)
    else:
        search = run_search_track(SearchTrackConfig(max_queries=arguments.max_queries),
                                  exposure_log=ExposureLog(REPORTS / "capstone_search_exposures.jsonl"),
                                  progress=progress)
        beauty = run_beauty_track(progress=progress)
        served = served_recommend_ab(beauty, users=arguments.served_users, salt="capstone-1",
                                     log_path=REPORTS / "capstone_recommend_exposures.jsonl")
        meta = {"seconds": round(time.perf_counter() - started, 1),
                "load_before": " ".join(f"{value:.2f}" for value in load_before),
                "load_after": " ".join(f"{value:.2f}" for value in os.getloadavg())}
        if arguments.tracks:
            with artifacts.atomic_path(arguments.tracks) as staging, open(staging, "wb") as handle:
                pickle.dump((search, beauty, served, meta), handle)
    search["claims"] = search_claims(search)
    beauty["claims"] = beauty_claims(beauty)
    report = {"command": COMMAND, "machine": machine(), "search": search, "beauty": beauty,
              "served_recommend": served, **meta}
    report["findings"] = findings(report)
    arrays = {f"search/{name}": values for name, values in search.pop("per_query").items()}
    for system, values in beauty.pop("per_user").items():
        arrays.update({f"beauty/{system}/{metric}": array for metric, array in values.items()})
    arrays["beauty/targets"] = beauty["test_order"].pop("targets")
    beauty["test_order"].pop("user_index", None)
    report["search"]["per_query"], report["beauty"]["per_user"] = None, None
    markdown = render_markdown(report, COMMAND)
    REPORTS.mkdir(exist_ok=True)
    with artifacts.atomic_path(REPORTS / "capstone_per_event.npz") as staging:
        with open(staging, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    artifacts.write_json(REPORTS / "capstone.json", report)
    summary_plot(report, REPORTS / "capstone.png")
    artifacts.write_text(REPORTS / "capstone.md", markdown + "\n![capstone summary](capstone.png)\n")
    artifacts.write_text(REPORTS / "capstone.html", html_page(report, markdown))
    if arguments.max_queries is None:          # a quick look never touches the README
        write_readme_block("capstone", readme_block(report))
    print(markdown)
    print(f"\nwrote reports/capstone.{{md,json,png,html}} and reports/capstone_per_event.npz in "
          f"{report['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

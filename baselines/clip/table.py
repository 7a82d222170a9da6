"""Chapter-7 table: rows and columns as data, read from the runs' report.json files."""

from __future__ import annotations

from typing import Any

from mmq.tables import markdown_grid, metric_row

TABLE = "ch7_cross_modal"
CROSS_MODAL_METRICS = ("text_to_image/recall@1", "text_to_image/recall@5", "text_to_image/recall@10",
                       "image_to_text/recall@1", "image_to_text/recall@5", "image_to_text/recall@10",
                       "text_to_image/category_precision@10", "image_to_text/category_precision@10",
                       "text_to_text/category_precision@10")
NEXT_ITEM_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
# report key of a tower row -> method name in the table
TOWER_ROWS = {"trained": "image tower, trained (ClipLoss vs frozen MiniLM)",
              "myntra_tower_zero_shot": "image tower trained on Myntra only (no poster fine-tuning)",
              "random_init": "same tower, random init"}
STAGE_DATASETS = {"myntra": "myntra (test gallery)", "movielens": "movielens posters (test gallery)"}
# short column names of the Markdown grids
SHORT_NAMES = {metric: metric.replace("text_to_image", "t→i").replace("image_to_text", "i→t")
               .replace("text_to_text", "t→t").replace("category_precision", "cat_P")
               for metric in CROSS_MODAL_METRICS}
README_METRICS = ("text_to_image/recall@1", "text_to_image/recall@10", "image_to_text/recall@10",
                  "text_to_image/category_precision@10", "text_to_text/category_precision@10")


def tower_rows(reports: list[dict[str, Any]]) -> list[dict]:
    """Cross-modal rows per stage: trained, zero-shot (fine-tuned stages), random init, text-only reference."""
    rows = []
    for stage, dataset in STAGE_DATASETS.items():
        stage_reports = [report["metrics"]["stages"][stage] for report in reports
                         if stage in report["metrics"]["stages"]]
        if not stage_reports:
            continue
        for key, method in TOWER_ROWS.items():
            if key not in stage_reports[0]["test"]:
                continue
            for metric in CROSS_MODAL_METRICS[:-1]:
                values = [stage_report["test"][key][metric] for stage_report in stage_reports]
                rows.append(metric_row(TABLE, dataset, method, "test", metric, values))
        values = [stage_report["text_only_reference"]["text_to_text/category_precision@10"]
                  for stage_report in stage_reports]
        rows.append(metric_row(TABLE, dataset, "text only: MiniLM text->text (self excluded)", "test",
                               "text_to_text/category_precision@10", values))
    return rows


def next_item_rows(reports: list[dict[str, Any]]) -> list[dict]:
    """MovieLens next-item rows: text-only, image-only, tower text head and fused indexes."""
    rows = []
    for name in reports[0]["metrics"]["indexes"] if reports else []:
        for metric in NEXT_ITEM_METRICS:
            values = [report["metrics"]["indexes"][name]["test"][metric] for report in reports]
            rows.append(metric_row(TABLE, "movielens next-item (leave-one-out)", name, "test", metric, values))
    return rows


def readme_grid(rows: list[dict]) -> str:
    """The README block: the cross-modal test rows of both galleries (R@1/10 and category precision)."""
    renamed = [{**row, "metric": SHORT_NAMES[row["metric"]]} for row in rows if row["metric"] in SHORT_NAMES
               and row["dataset"] in STAGE_DATASETS.values()]
    return markdown_grid(renamed, [SHORT_NAMES[metric] for metric in README_METRICS], split="test",
                         label_columns=("dataset", "method"))


def render_markdown(tower_reports: list[dict], retrieval_reports: list[dict], rows: list[dict],
                    commands: list[str], figures: list[str]) -> str:
    """The chapter-7 table as Markdown, with the settings a reader needs to interpret it."""
    tower = tower_reports[0]["metrics"]["stages"]
    renamed = [{**row, "metric": SHORT_NAMES.get(row["metric"], row["metric"])} for row in rows]
    lines = ["# Chapter 7: cross-modal retrieval with an image tower trained against frozen MiniLM text", "",
             "Regenerate: " + " && ".join(f"`{command}`" for command in commands), ""]
    for stage, dataset in STAGE_DATASETS.items():
        if stage not in tower:
            continue
        info = tower[stage]
        label = "with the same articleType as" if stage == "myntra" else "sharing at least one genre with"
        lines += [f"## {dataset}", "",
                  f"Test gallery {info['split_sizes']['test']:,} held-out items (train {info['split_sizes']['train']:,},"
                  f" valid {info['split_sizes']['valid']:,}); instance-level Recall@k; cat_P@10 = fraction of the"
                  f" top 10 {label} the query. Text recipe `{info['text_recipe']}`; best epoch"
                  f" {info['best_epoch']}/{len(info['history'])} by validation t→i R@10; training"
                  f" {info['train_seconds'] / 60:.1f} min.", "",
                  markdown_grid([row for row in renamed if row["dataset"] == dataset],
                                [SHORT_NAMES[metric] for metric in CROSS_MODAL_METRICS], split="test",
                                label_columns=("method",)), ""]
    if retrieval_reports:
        metrics = retrieval_reports[0]["metrics"]
        lines += ["## MovieLens next-item retrieval (chapter-1 protocol)", "",
                  f"{metrics['num_queries']} users, {metrics['dataset']['items']:,} items; query = recency-weighted"
                  " mean of the last 20 items (decay chosen on valid per index), history items removed; exact"
                  f" FAISS inner product. Fused = concatenated normalised MiniLM text and poster vectors, image"
                  f" weight chosen on valid ({metrics['selected_fusion']}).", "",
                  markdown_grid([row for row in rows if row["dataset"].startswith("movielens next-item")],
                                NEXT_ITEM_METRICS, split="test", label_columns=("method",)), ""]
    if figures:
        lines += ["Query grids: " + ", ".join(f"[{name}]({name})" for name in figures), ""]
    return "\n".join(lines)

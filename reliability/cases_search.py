"""Category ``search``: bad queries, label files and embeddings in the chapter-2/4 query-product search."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reliability.checks import expect_error, verdict
from reliability.core import Case, Outcome, Sandbox, declare

CATEGORY = "search"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)


def _catalogue() -> tuple[pd.DataFrame, list[str]]:
    attributes = pd.DataFrame({"gender": ["Men", "Women"], "subCategory": ["Topwear"] * 2,
                               "articleType": ["Shirts", "Tops"], "baseColour": ["Blue", "Red"], "usage": ["Casual"] * 2,
                               "season": ["Summer"] * 2, "brand": ["Acme", "Acme"]})
    return attributes, ["101", "102"]


@case("search_empty_query", "a whitespace-only query -> QueryError 'empty query'", fast=True)
def empty_query(box: Sandbox) -> Outcome:
    from baselines.two_tower.queries import QueryError, clean_query

    return expect_error(lambda: clean_query(" \t\n "), types=(QueryError,), names=["empty query"])


@case("search_overlong_query", "a 5,000-character query -> truncated to 256 characters and flagged, not an error",
      fast=True)
def overlong_query(box: Sandbox) -> Outcome:
    from baselines.two_tower.queries import MAX_QUERY_CHARS, clean_query

    text, truncated = clean_query("blue shirt " * 500)
    problems = [] if truncated and len(text) == MAX_QUERY_CHARS else [f"truncated={truncated}, {len(text)} chars"]
    return verdict(problems, f"truncated to {len(text)} characters, flagged")


@case("search_labels_unknown_product", "labels naming products not in the catalogue -> QueryError counting them; "
      "nothing loaded", fast=True)
def labels_unknown_product(box: Sandbox) -> Outcome:
    from baselines.two_tower.queries import QueryError, load_query_files

    attributes, ids = _catalogue()
    queries, labels = box.root / "queries.tsv", box.root / "labels.tsv"
    queries.write_text("q1\tblue shirts\n")
    labels.write_text("q1\t101\t3\nq1\t999\t2\nq1\t998\t1\n")
    return expect_error(lambda: load_query_files(attributes, ids, queries, labels), types=(QueryError,),
                        names=["2 labels name products not in the catalogue", "999"])


@case("search_query_without_relevant", "a query whose labels are all 0 -> excluded and counted", fast=True)
def query_without_relevant(box: Sandbox) -> Outcome:
    from baselines.two_tower.queries import load_query_files

    attributes, ids = _catalogue()
    queries, labels = box.root / "queries.tsv", box.root / "labels.tsv"
    queries.write_text("q1\tblue shirts\nq2\tred tops\n")
    labels.write_text("q1\t101\t3\nq2\t102\t0\n")
    kept, _, counts = load_query_files(attributes, ids, queries, labels)
    problems = [] if [query_id for query_id, _ in kept] == ["q1"] and counts["queries_without_relevant"] == 1 \
        else [f"kept {kept}, counts {counts}"]
    return verdict(problems, "q2 excluded, queries_without_relevant = 1")


@case("search_nan_product_embeddings", "NaN product embeddings -> ValueError naming the rows before FAISS", fast=True)
def nan_product_embeddings(box: Sandbox) -> Outcome:
    from baselines.two_tower.search import dense_search

    products = np.eye(6, dtype=np.float32)
    products[[2, 4], 0] = np.nan
    return expect_error(lambda: dense_search(products, np.eye(6, dtype=np.float32)[:2], 3), types=(ValueError,),
                        names=["product embeddings", "NaN", "[2, 4]"])


@case("search_query_dim_mismatch", "query embeddings of another width -> ValueError naming both widths", fast=True)
def query_dim_mismatch(box: Sandbox) -> Outcome:
    from baselines.two_tower.search import dense_search

    return expect_error(lambda: dense_search(np.eye(6, dtype=np.float32), np.ones((2, 4), dtype=np.float32), 3),
                        types=(ValueError,), names=["4 dims", "6"])

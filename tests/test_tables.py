"""Table rendering: long-format CSV and Markdown grids (golden outputs)."""

from __future__ import annotations

import math

import pytest

from mmq.tables import format_value, markdown_grid, metric_row, rows_to_csv, write_table


def test_metric_row_aggregates_seeds():
    row = metric_row("t", "beauty", "A", "test", "ndcg@10", [0.1, 0.2, 0.3])
    assert row["mean"] == pytest.approx(0.2)
    assert row["std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert row["n_seeds"] == 3 and row["source"] == "ours"
    assert math.isnan(metric_row("t", "d", "A", "test", "m", [0.5])["std"])
    with pytest.raises(ValueError, match="source"):
        metric_row("t", "d", "A", "test", "m", [0.5], source="mine")


def test_golden_csv_and_markdown(tmp_path):
    rows = [
        metric_row("t", "beauty", "A", "test", "recall@10", [0.05, 0.07]),
        metric_row("t", "beauty", "A", "test", "queries_per_second", [12345.6]),
        metric_row("t", "beauty", "B", "test", "recall@10", [0.0648], source="paper"),
        metric_row("t", "beauty", "B", "valid", "recall@10", [0.9]),
    ]
    assert rows_to_csv(rows) == (
        "table,dataset,method,split,metric,mean,std,n_seeds,source\n"
        "t,beauty,A,test,recall@10,0.06,0.0141421,2,ours\n"
        "t,beauty,A,test,queries_per_second,12345.6,nan,1,ours\n"
        "t,beauty,B,test,recall@10,0.0648,nan,1,paper\n"
        "t,beauty,B,valid,recall@10,0.9,nan,1,ours\n"
    )
    assert markdown_grid(rows, ("recall@10", "queries_per_second"), split="test") == (
        "| method | source | recall@10 | queries_per_second |\n"
        "|---|---|---|---|\n"
        "| A | ours | 0.0600 ± 0.0141 | 12,346 |\n"
        "| B | paper | 0.0648 | - |"
    )
    csv_path, markdown_path = write_table("golden", rows, "# title", tmp_path)
    assert markdown_path.read_text() == "# title\n" and csv_path.read_text().count("\n") == 5


def test_format_value_handles_missing():
    assert format_value(float("nan")) == "-"
    assert format_value(0.123456, digits=3) == "0.123"


def test_a_table_for_another_dataset_never_overwrites_the_committed_one():
    from mmq.tables import output_name

    assert output_name("ch1_dense_retrieval", "beauty", "beauty") == "ch1_dense_retrieval"
    assert output_name("ch1_dense_retrieval", "toys", "beauty") == "ch1_dense_retrieval_toys"
    assert output_name("ch1_dense_retrieval", "toys", "beauty", name="mine") == "mine"

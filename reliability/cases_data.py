"""Category ``data files``: missing, truncated, corrupt and odd input files, through ``load_dataset``."""

from __future__ import annotations

import zipfile

from reliability import synthetic
from reliability.checks import expect_error, summarise, verdict
from reliability.core import Case, Outcome, Sandbox, declare, describe

CATEGORY = "data files"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)


def _load(name: str, **kwargs):
    from mmq.data import load_dataset

    return lambda: load_dataset(name, use_cache=False, **kwargs)


@case("data_missing_file", "missing dataset file -> MissingDataError naming the file and MMQ_DATA_DIR", fast=True)
def missing_file(box: Sandbox) -> Outcome:
    from mmq.data import MissingDataError

    with box.active():
        return expect_error(_load("beauty"), types=(MissingDataError,),
                            names=["amazon14/beauty/user_sequence.txt", "MMQ_DATA_DIR"])


@case("data_truncated_csv", "ratings.csv cut mid-row (statistics no longer the published ones) -> loud error naming "
      "the counts", fast=True)
def truncated_csv(box: Sandbox) -> Outcome:
    """ratings.csv cut at 60% (mid-row) of a MovieLens dataset whose YAML publishes the full file's statistics."""
    import yaml

    from mmq.data import load_dataset
    from mmq.data.registry import SHIPPED_DATASETS_DIR

    synthetic.write_movielens(box.data)
    spec = yaml.safe_load((SHIPPED_DATASETS_DIR / "movielens.yaml").read_text())
    spec.update(name="movielens_fault", kcore=5)
    spec.pop("expected", None)
    path = synthetic.write_yaml(box.configs / "movielens_fault.yaml", spec)
    with box.active():
        full = load_dataset(str(path), use_cache=False).statistics()
        published = {key: full[key] for key in ("users", "items", "interactions")}
        synthetic.write_yaml(path, {**spec, "expected": published})
        try:
            load_dataset(str(path), use_cache=False)  # control: the untruncated files match their statistics
        except Exception as error:  # noqa: BLE001
            return Outcome(False, f"control (untruncated, matching statistics) raised {describe(error)}")
        synthetic.truncate(box.data / "movielens/ml-latest-small/ratings.csv", 0.6)
        number = published["interactions"]
        outcome = expect_error(lambda: load_dataset(str(path), use_cache=False),
                               patterns=[rf"\b({number}|{number:,})\b", "interactions"])
        with box.active(MMQ_ALLOW_DATA_MISMATCH="1"):
            try:
                allowed = load_dataset(str(path), use_cache=False)
            except Exception as error:  # noqa: BLE001
                return Outcome(False, f"{outcome.observed}; but MMQ_ALLOW_DATA_MISMATCH=1 still raised "
                                      f"{describe(error)}")
    return Outcome(outcome.ok, f"{outcome.observed}; allowed (MMQ_ALLOW_DATA_MISMATCH=1): loaded "
                               f"{len(allowed.interactions)} of {number} interactions")


@case("data_non_utf8", "non-UTF-8 bytes in user_sequence.txt line 7 -> error naming the file and line 7", fast=True)
def non_utf8(box: Sandbox) -> Outcome:
    folder = synthetic.write_beauty(box.data)
    path = folder / "user_sequence.txt"
    lines = path.read_bytes().split(b"\n")
    lines[6] = lines[6] + b" B\xff\xfe00001"
    path.write_bytes(b"\n".join(lines))
    with box.active():
        return expect_error(_load("beauty", kcore=0), names=["user_sequence.txt"], patterns=[r"line\s*7\b|txt:7\b"])


@case("data_malformed_csv_line", "products_lookup.csv line 5 with a surplus field -> error naming the file and line "
      "5", fast=True)
def malformed_csv_field_count(box: Sandbox) -> Outcome:
    folder = synthetic.write_beauty(box.data)
    path = folder / "products_lookup.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4] + ",surplus field"
    path.write_text("\n".join(lines) + "\n")
    with box.active():
        return expect_error(_load("beauty", kcore=0), names=["products_lookup.csv"], patterns=[r"line\s*5\b|csv:5\b"])


@case("data_unclosed_quote", "movies.csv line 4 with an unclosed quote -> error naming file+line, or that row alone "
      "counted as malformed (no silent loss of later rows)", fast=True)
def unclosed_quote(box: Sandbox) -> Outcome:
    """movies.csv line 4 opens a quote it never closes: the rows after it must not vanish silently."""
    synthetic.write_movielens(box.data)
    path = box.data / "movielens/ml-latest-small/movies.csv"
    lines = path.read_text().splitlines()
    total = len(lines) - 1
    lines[3] = lines[3].replace("Movie 3", '"Movie 3', 1)
    path.write_text("\n".join(lines) + "\n")
    from mmq.data import load_dataset

    with box.active():
        try:
            dataset = load_dataset("movielens_all", kcore=0, use_cache=False)
        except Exception as error:  # noqa: BLE001
            message = str(error)
            ok = "movies.csv" in message and any(token in message for token in ("line 4", "csv:4"))
            return Outcome(ok, describe(error) + ("" if ok else " [message lacks movies.csv and line 4]"))
    counted = {key: value for key, value in dataset.report.counts.items() if "movies" in key and "malformed" in key}
    kept = dataset.num_items
    ok = kept == total - 1 and sum(counted.values()) == 1
    return Outcome(ok, f"no error; {kept} of {total} movies kept, malformed rows counted {counted or 'none'}, "
                       f"report {dict(dataset.report.counts)}")


@case("data_truncated_zip", "posters.zip cut in half -> error naming posters.zip", fast=True)
def truncated_zip(box: Sandbox) -> Outcome:
    synthetic.write_movielens(box.data)
    synthetic.truncate(box.data / "movielens/posters.zip", 0.5)
    with box.active():
        return expect_error(_load("movielens"), names=["posters.zip"])


@case("data_corrupt_zip_member", "styles.csv.zip with a corrupted member (CRC) -> error naming the archive and the "
      "member", fast=True)
def corrupt_zip_member(box: Sandbox) -> Outcome:
    """styles.csv.zip stored uncompressed with one byte of its member flipped (a CRC error)."""
    folder = synthetic.write_myntra(box.data, compression=zipfile.ZIP_STORED)
    path = folder / "styles.csv.zip"
    data = bytearray(path.read_bytes())
    offset = data.index(b"Blue Tee 3")
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))

    with box.active():  # the member: "styles.csv" not followed by ".zip"
        return expect_error(_load("myntra"), names=["styles.csv.zip"], patterns=[r"styles\.csv(?!\.zip)"])


@case("data_truncated_gzip", "reviews_Beauty_5.json.gz cut at 60% -> error naming the gzip file", fast=True)
def truncated_gzip(box: Sandbox) -> Outcome:
    folder = synthetic.write_raw_amazon(box.data)
    synthetic.truncate(folder / "reviews_Beauty_5.json.gz", 0.6)
    with box.active():
        return expect_error(_load("beauty_raw", kcore=0), names=["reviews_Beauty_5.json.gz"])


@case("data_truncated_json", "item_id_to_int.json cut in half -> error naming the file and the line", fast=True)
def truncated_json(box: Sandbox) -> Outcome:
    folder = synthetic.write_beauty(box.data)
    synthetic.truncate(folder / "item_id_to_int.json", 0.5)
    with box.active():
        return expect_error(_load("beauty", kcore=0), names=["item_id_to_int.json"], patterns=[r"line\s*\d+|json:\d+"])


@case("data_empty_text", "3 empty titles -> loaded, counted in the import report and statistics", fast=True)
def empty_text(box: Sandbox) -> Outcome:
    synthetic.write_beauty(box.data, empty_titles=3)
    from mmq.data import load_dataset

    with box.active():
        dataset = load_dataset("beauty", kcore=0, use_cache=False)
    stats = dataset.statistics()
    counted, empty = dataset.report.counts.get("empty_titles"), stats.get("empty_title")
    return verdict([] if counted == 3 and empty == 3 else [f"empty titles: report {counted}, statistics {empty}, "
                                                            f"expected 3 ({summarise(dataset)})"],
                   f"loaded; import report empty_titles={counted}, statistics empty_title={empty}")

"""Tests for the data importers (P5, Office JSON, raw Amazon 2014, MovieLens, Myntra) and the
``load_dataset`` registry + parquet cache. All inputs are tiny hand-written files: the raw Amazon
ones are committed under ``tests/fixtures/amazon14_raw`` (see its README), the others are written
into ``tmp_path`` by the tests. Dataset YAMLs: tests/test_datasets_by_config.py; published
statistics and corrupt files: tests/test_data_trust.py."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from mmq.data import registry
from mmq.data.amazon_office import load_office
from mmq.data.amazon_p5 import load_p5
from mmq.data.amazon_raw import flatten_categories, load_amazon_raw, parse_record
from mmq.data.movielens import load_movielens, split_title_year
from mmq.data.myntra import load_myntra
from mmq.data.paths import MissingDataError, require_file
from mmq.data.registry import load_dataset
from mmq.data.schema import INTERACTION_COLUMNS

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


def sequences_by_user_id(dataset) -> dict[str, list[str]]:
    """user_id -> item_ids in position order (checks the ordering contract independently)."""
    frame = dataset.interactions.merge(dataset.items[["item_index", "item_id"]], on="item_index")
    frame = frame.sort_values(["user_id", "position"])
    return {user: group["item_id"].tolist() for user, group in frame.groupby("user_id", sort=True)}


def assert_positions_dense(interactions: pd.DataFrame) -> None:
    for _, group in interactions.groupby("user_index"):
        assert group["position"].tolist() == list(range(len(group)))


# ----------------------------------------------------------------------------------------------
# P5 / TIGER user_sequence.txt (+ Beauty titles)
# ----------------------------------------------------------------------------------------------

P5_SEQUENCES = "U1 A1 A2 A3\nU2 A2 A4\nU3\n\nU1 A5\nU4 A3 A1 A5 A2\n"


@pytest.fixture
def p5_root(tmp_path) -> Path:
    root = tmp_path / "data"
    for category in ("beauty", "sports"):
        write(root / f"amazon14/{category}/user_sequence.txt", P5_SEQUENCES)
    # A5 has no entry (items_without_title_entry); A9 is a catalogue item nobody bought;
    # A6 points to a product id missing from the lookup; A2's title is empty; A4's title is the
    # literal string "NA" (must not become NaN / empty); A3's name contains a comma.
    write(root / "amazon14/beauty/item_id_to_int.json",
          json.dumps({"A1": 10, "A2": 11, "A3": 12, "A4": 13, "A9": 19, "A6": 99}))
    write(root / "amazon14/beauty/products_lookup.csv",
          ',global_product_id,name\n0,12,"Shampoo, Extra Volume"\n1,10,Pink Lipstick\n2,11,\n'
          "3,13,NA\n4,19,Unused Item\n")
    return root


def test_p5_sequences_in_order_with_dense_positions(p5_root):
    dataset = load_p5("sports", p5_root)
    assert dataset.items["item_id"].tolist() == ["A1", "A2", "A3", "A4", "A5"]  # first appearance
    assert dataset.items["item_index"].tolist() == [0, 1, 2, 3, 4]
    assert list(dataset.items.columns) == ["item_index", "item_id", "image"]
    assert dataset.text_fields == ()
    frame = dataset.interactions
    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert frame["user_id"].tolist() == ["U1"] * 3 + ["U2"] * 2 + ["U4"] * 4
    assert frame["user_index"].tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert frame["item_index"].tolist() == [0, 1, 2, 1, 3, 2, 0, 4, 1]
    assert frame["position"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert frame["timestamp"].isna().all() and frame["rating"].isna().all()
    assert [s.tolist() for s in dataset.sequences()] == [[0, 1, 2], [1, 3], [2, 0, 4, 1]]
    assert dict(dataset.report.counts) == {"malformed_rows": 1, "duplicate_users": 1, "blank_lines": 1}
    assert dataset.num_users == 3 and dataset.num_items == 5


def test_p5_duplicate_user_keeps_first_line(p5_root):
    dataset = load_p5("sports", p5_root)
    # the second "U1 A5" line is counted and ignored, not appended to U1's sequence
    assert sequences_by_user_id(dataset)["U1"] == ["A1", "A2", "A3"]
    assert dataset.report.counts["duplicate_users"] == 1
    assert any("U1" in example for example in dataset.report.examples["duplicate_users"])


def test_p5_beauty_titles_joined(p5_root):
    dataset = load_p5("beauty", p5_root)
    assert dataset.text_fields == ("title",)
    titles = dict(zip(dataset.items["item_id"], dataset.items["title"]))
    assert titles == {"A1": "Pink Lipstick", "A2": "", "A3": "Shampoo, Extra Volume", "A4": "NA", "A5": ""}
    counts = dataset.report.counts
    # empty_titles counts the one empty name (A2) and the item without any entry (A5)
    assert counts["empty_titles"] == 2
    assert counts["items_without_title_entry"] == 1
    assert counts["titles_missing_from_lookup"] == 1
    assert counts["catalogue_items_without_interactions"] == 1  # A9 (A6 has no title, counted above)
    assert dataset.statistics()["empty_title"] == 2


def test_p5_uses_mmq_data_dir_when_root_is_none(p5_root, monkeypatch):
    monkeypatch.setenv("MMQ_DATA_DIR", str(p5_root))
    assert len(load_p5("sports").interactions) == 9


# ----------------------------------------------------------------------------------------------
# Office (LC-Rec JSON)
# ----------------------------------------------------------------------------------------------

OFFICE_ITEMS = {
    "0": {"title": "Stapler", "description": "Heavy duty stapler.", "brand": "Swingline",
          "categories": "Office Products, Office & School Supplies, Staplers"},
    "1": {"title": "Gel Pen", "description": "", "brand": "Bic", "categories": "Office Products, Writing"},
    "2": {"title": " Copy Paper ", "description": "   ", "brand": None,
          "categories": ["Office Products", "Paper"]},
    "3": "not a record",
}


@pytest.fixture
def office_root(tmp_path) -> Path:
    root = tmp_path / "data"
    write(root / "amazon14/office/Office.inter.json",
          json.dumps({"0": [0, 1, 2], "1": [2, 0], "2": [], "3": [1, 2]}, indent=4))
    write(root / "amazon14/office/Office.item.json", json.dumps(OFFICE_ITEMS, indent=4))
    return root


def test_office_text_fields_and_counts(office_root):
    dataset = load_office(office_root)
    assert dataset.text_fields == ("title", "description", "brand", "categories")
    items = dataset.items
    assert list(items.columns) == ["item_index", "item_id", "title", "description", "brand", "categories", "image"]
    assert items["item_id"].tolist() == ["0", "1", "2"]
    assert items["title"].tolist() == ["Stapler", "Gel Pen", "Copy Paper"]
    assert items["description"].tolist() == ["Heavy duty stapler.", "", ""]
    assert items["brand"].tolist() == ["Swingline", "Bic", ""]
    assert items["categories"].tolist() == ["Office Products, Office & School Supplies, Staplers",
                                            "Office Products, Writing", "Office Products, Paper"]
    assert dict(dataset.report.counts) == {"empty_description": 2, "empty_brand": 1,
                                           "malformed_item_records": 1, "malformed_rows": 1}
    frame = dataset.interactions
    assert frame["user_id"].tolist() == ["0", "0", "0", "1", "1", "3", "3"]
    assert frame["item_index"].tolist() == [0, 1, 2, 2, 0, 1, 2]
    assert frame["position"].tolist() == [0, 1, 2, 0, 1, 0, 1]


def test_office_unknown_item_ids_dropped_and_positions_stay_dense(office_root):
    write(office_root / "amazon14/office/Office.inter.json", json.dumps({"0": [0, 1, 2], "3": [7, 1, 2]}))
    dataset = load_office(office_root)
    assert dataset.report.counts["unknown_item_ids"] == 1
    assert sequences_by_user_id(dataset)["3"] == ["1", "2"]
    assert_positions_dense(dataset.interactions)


# ----------------------------------------------------------------------------------------------
# Raw Amazon 2014 (committed fixtures)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def raw_root(tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "amazon14_raw", root / "amazon14_raw")
    return root


def test_parse_record_json_and_python_literal():
    assert parse_record('{"asin": "X", "price": 1.5}') == {"asin": "X", "price": 1.5}
    assert parse_record("{'asin': 'X', 'title': \"Men's\"}") == {"asin": "X", "title": "Men's"}
    assert parse_record("{'asin': 'X'") is None
    assert parse_record("[1, 2]") is None
    assert parse_record("__import__('os')") is None


def test_flatten_categories():
    assert flatten_categories([["Beauty", "Makeup"], ["Beauty", "Face"]]) == "Beauty, Makeup, Face"
    assert flatten_categories([]) == ""
    assert flatten_categories(None) == ""
    assert flatten_categories("Beauty, Lips") == "Beauty, Lips"


def test_raw_amazon_items_and_metadata(raw_root):
    dataset = load_amazon_raw("beauty", raw_root)
    items = dataset.items
    assert dataset.text_fields == ("title", "description", "brand", "categories")
    assert items["item_id"].tolist() == ["B002", "B001", "B003", "B006", "B004", "B005"]
    assert items["title"].tolist() == ["Rose Face Cream", "Pink Lipstick", "Men's Shaving Gel", "",
                                       "Nail Polish Remover", ""]
    assert items["description"].tolist() == ["A rich cream.", "", "Smooth shave.", "", "", "No title here"]
    assert items["brand"].tolist() == ["", "Rosy", "", "", "", ""]
    assert items["categories"].tolist() == ["Beauty, Skin Care, Face, Fragrance", "Beauty, Makeup, Lips",
                                            "Beauty, Shave", "", "Beauty, Nails", ""]
    np.testing.assert_array_equal(items["price"].to_numpy(), [12.5, 5.99, np.nan, np.nan, 3.0, np.nan])
    assert items["image_url"].tolist() == ["http://ecx.images-amazon.com/images/I/B002.jpg",
                                           "http://ecx.images-amazon.com/images/I/B001.jpg", "", "", "", ""]
    assert (items["image"] == "").all()
    assert dict(dataset.report.counts) == {"malformed_review_rows": 2, "malformed_meta_rows": 2,
                                           "items_without_metadata": 1, "empty_titles": 2}


def test_raw_amazon_interactions_follow_review_time(raw_root):
    dataset = load_amazon_raw("beauty", raw_root)
    frame = dataset.interactions
    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert len(frame) == 12
    assert sequences_by_user_id(dataset) == {
        "U1": ["B001", "B002"],
        "U2": ["B003", "B001", "B006"],
        "U3": ["B004", "B005"],  # same second: file order
        "U4": ["B005", "B002"],
        "U5": ["B003"],
        "U6": ["B001", "B004"],
    }
    assert frame["user_id"].drop_duplicates().tolist() == ["U1", "U2", "U3", "U4", "U5", "U6"]
    u2 = frame[frame["user_id"] == "U2"]
    assert u2["timestamp"].tolist() == [1400000150.0, 1400000300.0, 1400000400.0]
    assert u2["rating"].tolist() == [2.0, 3.0, 4.0]
    assert u2["position"].tolist() == [0, 1, 2]
    u1 = frame[frame["user_id"] == "U1"]  # the Python-literal review line (B001) is parsed
    assert u1["rating"].tolist() == [5.0, 4.0]
    assert u1["timestamp"].tolist() == [1400000100.0, 1400000200.0]
    assert_positions_dense(frame)


def test_raw_amazon_unknown_category(raw_root):
    with pytest.raises(ValueError, match="beauty"):
        load_amazon_raw("garden", raw_root)


# ----------------------------------------------------------------------------------------------
# MovieLens latest-small + posters (+ optional IMDB-5000)
# ----------------------------------------------------------------------------------------------

ML_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    "2,Jumanji (1995),Adventure|Children|Fantasy\n"
    '3,"American President, The (1995)",Comedy|Drama|Romance\n'
    "4,Babylon 5,(no genres listed)\n"
    "5,No Poster Movie (2001),Drama\n"
    "6,Heat (1995),Action|Crime|Thriller\n"
)
ML_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,3,4.5,964981247\n"
    "1,5,3.0,964982224\n"
    "2,2,2.5,1445714835\n"
    "2,abc,3.0,1445714836\n"
    "2,999,5.0,1445714837\n"
    "3,1,5.0,1300000000\n"
    "3,4,1.0,1200000000\n"
)
ML_TAGS = (
    "userId,movieId,tag,timestamp\n"
    "1,1,pixar,1\n2,1,Pixar,2\n3,1,fun,3\n1,1,animation,4\n2,1,Animation ,5\n3,1,pixar,6\n"
    "1,2,board game,7\n"
)
ML_LINKS = ("movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,8844\n3,0112346,9087\n4,0105946,\n"
            "5,0000001,1\n6,0113277,949\n")
ML_IMDB = (
    "color,director_name,actor_2_name,actor_1_name,movie_title,actor_3_name,plot_keywords,movie_imdb_link\n"
    "Color,John Lasseter,Tim Allen,Tom Hanks,Toy Story ,Don Rickles,toy|rivalry|cowboy,"
    "http://www.imdb.com/title/tt0114709/?ref_=fn_tt_tt_1\n"
    "Color,Michael Mann,Robert De Niro,Al Pacino,Heat ,,heist|los angeles,"
    "http://www.imdb.com/title/tt0113277/?ref_=fn_tt_tt_1\n"
    "Color,Nobody,,,Unlinked ,,,http://www.imdb.com/title/tt9999999/\n"
)


@pytest.fixture
def ml_root(tmp_path) -> Path:
    root = tmp_path / "data"
    base = root / "movielens/ml-latest-small"
    write(base / "movies.csv", ML_MOVIES)
    write(base / "ratings.csv", ML_RATINGS)
    write(base / "tags.csv", ML_TAGS)
    write(base / "links.csv", ML_LINKS)
    write_zip(root / "movielens/posters.zip", {f"{movie}.jpg": b"\xff\xd8jpeg" for movie in (1, 2, 3, 4, 6)})
    return root


def test_split_title_year():
    assert split_title_year("Toy Story (1995)") == ("Toy Story", "1995")
    assert split_title_year("Babylon 5") == ("Babylon 5", "")
    assert split_title_year("Big Bang Theory, The (2007-)") == ("Big Bang Theory, The", "2007")
    assert split_title_year("1408 (2007) ") == ("1408", "2007")


def test_movielens_items_without_imdb(ml_root):
    dataset = load_movielens(ml_root, require_image=True)
    assert dataset.text_fields == ("title", "year", "genres", "tags", "director", "actors", "plot_keywords")
    items = dataset.items
    assert list(items.columns) == ["item_index", "item_id", "title", "year", "genres", "tags", "director",
                                   "actors", "plot_keywords", "image"]
    assert items["item_id"].tolist() == ["1", "2", "3", "4", "6"]
    assert items["title"].tolist() == ["Toy Story", "Jumanji", "American President, The", "Babylon 5", "Heat"]
    assert items["year"].tolist() == ["1995", "1995", "1995", "", "1995"]
    assert items["genres"].tolist() == ["Adventure, Animation, Children, Comedy, Fantasy",
                                        "Adventure, Children, Fantasy", "Comedy, Drama, Romance", "",
                                        "Action, Crime, Thriller"]
    assert items["tags"].tolist() == ["pixar, animation, fun", "board game", "", "", ""]
    assert items["image"].tolist() == [f"movielens/posters.zip:{movie}.jpg" for movie in (1, 2, 3, 4, 6)]
    for field in ("director", "actors", "plot_keywords"):
        assert items[field].tolist() == [""] * 5
    assert dict(dataset.report.counts) == {
        "malformed_rows_ratings.csv": 1,  # movieId "abc"
        "imdb_metadata_missing": 1,
        "movies_without_poster": 1,       # movie 5
        "unknown_item_ids": 2,            # movie 999 (not in movies.csv) + movie 5 (dropped: no poster)
        "items_without_ratings": 1,       # Heat
    }


def test_movielens_interactions(ml_root):
    dataset = load_movielens(ml_root, require_image=True)
    frame = dataset.interactions
    assert frame["user_id"].tolist() == ["1", "1", "2", "3", "3"]
    assert frame["item_index"].tolist() == [2, 0, 1, 3, 0]  # ordered by timestamp within user
    assert frame["timestamp"].tolist() == [964981247.0, 964982703.0, 1445714835.0, 1200000000.0, 1300000000.0]
    assert frame["rating"].tolist() == [4.5, 4.0, 2.5, 1.0, 5.0]
    assert frame["position"].tolist() == [0, 1, 0, 0, 1]


def test_movielens_without_require_image_keeps_posterless_movies(ml_root):
    dataset = load_movielens(ml_root, require_image=False)
    assert dataset.items["item_id"].tolist() == ["1", "2", "3", "4", "5", "6"]
    assert dataset.items["image"].tolist()[4] == ""
    assert dataset.report.counts["unknown_item_ids"] == 1  # only movie 999
    assert sequences_by_user_id(dataset)["1"] == ["3", "5", "1"]


@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
def test_movielens_row_with_extra_field_is_counted(ml_root):
    write(ml_root / "movielens/ml-latest-small/ratings.csv", ML_RATINGS + "3,2,4.0,1300000001,extra\n")
    dataset = load_movielens(ml_root)
    assert dataset.report.counts["malformed_rows_ratings.csv"] == 2


def test_movielens_with_imdb_metadata(ml_root):
    write(ml_root / "movielens/imdb5000_movie_metadata.csv", ML_IMDB)
    dataset = load_movielens(ml_root)
    items = dataset.items.set_index("item_id")
    assert items.loc["1", "director"] == "John Lasseter"
    assert items.loc["1", "actors"] == "Tom Hanks, Tim Allen, Don Rickles"
    assert items.loc["1", "plot_keywords"] == "toy, rivalry, cowboy"
    assert items.loc["6", "actors"] == "Al Pacino, Robert De Niro"
    assert items.loc["6", "plot_keywords"] == "heist, los angeles"
    assert items.loc["2", "director"] == ""
    assert dataset.report.counts["movies_with_imdb_metadata"] == 2
    assert "imdb_metadata_missing" not in dataset.report.counts


# ----------------------------------------------------------------------------------------------
# Myntra styles.csv.zip + images.zip
# ----------------------------------------------------------------------------------------------

MYNTRA_STYLES = (
    "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
    "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
    "44065,Men,Personal Care,Fragrance,Perfume and Body Mist,Blue,Spring,2017,Casual,"
    "Boss Men Perfume, After Shave Balm and Shower Gel Set\n"
    "1234,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,Red Top Without Photo\n"
    "5555,Women,Footwear,Shoes\n"
    "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,\n"
)


@pytest.fixture
def myntra_root(tmp_path) -> Path:
    root = tmp_path / "data"
    write_zip(root / "myntra/styles.csv.zip", {"styles.csv": MYNTRA_STYLES.encode()})
    write_zip(root / "myntra/images.zip", {f"images/{i}.jpg": b"\xff\xd8" for i in (15970, 44065, 39386, 7777)})
    return root


def test_myntra_repairs_extra_comma_and_drops_rows_without_image(myntra_root):
    dataset = load_myntra(myntra_root)
    items = dataset.items
    assert items["item_id"].tolist() == ["15970", "44065", "39386"]
    assert items["title"].tolist() == ["Turtle Check Men Navy Blue Shirt",
                                       "Boss Men Perfume, After Shave Balm and Shower Gel Set", ""]
    assert items["articleType"].tolist() == ["Shirts", "Perfume and Body Mist", "Jeans"]
    assert items["year"].tolist() == ["2011", "2017", "2012"]
    assert items["image"].tolist() == ["myntra/images.zip:15970.jpg", "myntra/images.zip:44065.jpg",
                                       "myntra/images.zip:39386.jpg"]
    assert dict(dataset.report.counts) == {"repaired_rows_extra_comma": 1, "malformed_rows": 1,
                                           "rows_without_image": 1, "images_without_row": 1, "empty_titles": 1}
    assert list(dataset.interactions.columns) == list(INTERACTION_COLUMNS)
    assert len(dataset.interactions) == 0
    assert dataset.num_users == 0 and dataset.num_items == 3


# ----------------------------------------------------------------------------------------------
# Missing files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader, relative", [
    (lambda root: load_office(root), "amazon14/office/Office.inter.json"),
    (lambda root: load_p5("toys", root), "amazon14/toys/user_sequence.txt"),
    (lambda root: load_amazon_raw("beauty", root), "amazon14_raw/reviews_Beauty_5.json.gz"),
    (lambda root: load_movielens(root), "movielens/ml-latest-small/ratings.csv"),
    (lambda root: load_myntra(root), "myntra/styles.csv.zip"),
])
def test_missing_file_names_path_and_env_var(tmp_path, loader, relative):
    with pytest.raises(MissingDataError) as info:
        loader(tmp_path)
    message = str(info.value)
    assert str((tmp_path / relative).resolve()) in message
    assert "MMQ_DATA_DIR" in message
    assert isinstance(info.value, FileNotFoundError)


def test_missing_beauty_titles_named(p5_root):
    (p5_root / "amazon14/beauty/products_lookup.csv").unlink()
    with pytest.raises(MissingDataError, match="products_lookup.csv"):
        load_p5("beauty", p5_root)


def test_require_file_uses_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_DATA_DIR", str(tmp_path))
    with pytest.raises(MissingDataError, match=f"MMQ_DATA_DIR={tmp_path}"):
        require_file("myntra/images.zip")
    write(tmp_path / "myntra/images.zip", "x")
    assert require_file("myntra/images.zip") == tmp_path / "myntra/images.zip"


# ----------------------------------------------------------------------------------------------
# load_dataset: registry + parquet cache
# ----------------------------------------------------------------------------------------------


def test_load_dataset_unknown_name_lists_known(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("netflix", root=tmp_path)
    message = str(info.value)
    assert "netflix" in message
    for known in ("beauty", "sports", "toys", "office", "movielens", "movielens_all", "myntra", "beauty_raw"):
        assert repr(known) in message


def _forbid_import(monkeypatch, name):
    def boom(root):
        raise AssertionError(f"{name} was re-imported instead of read from the cache")
    monkeypatch.setitem(registry.DATASETS, name, dataclasses.replace(registry.DATASETS[name], loader=boom))


def assert_same_dataset(first, second):
    pdt.assert_frame_equal(first.items, second.items)
    pdt.assert_frame_equal(first.interactions, second.interactions)
    assert first.text_fields == second.text_fields
    assert dict(first.report.counts) == dict(second.report.counts)


def test_load_dataset_cache_roundtrip(p5_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    first = load_dataset("beauty", root=p5_root, kcore=2)
    done = list((tmp_path / "cache/processed").glob("beauty-*/DONE"))
    assert len(done) == 1
    _forbid_import(monkeypatch, "beauty")
    second = load_dataset("beauty", root=p5_root, kcore=2)
    assert_same_dataset(first, second)
    # 2-core of the P5 fixture: U2 (A2 A4) loses A4 and then has one item -> removed
    assert sequences_by_user_id(second) == {"U1": ["A1", "A2", "A3"], "U4": ["A3", "A1", "A2"]}
    assert second.report.counts["users_removed_by_2core"] == 1
    with pytest.raises(AssertionError, match="re-imported"):
        load_dataset("beauty", root=p5_root, kcore=2, use_cache=False)
    with pytest.raises(AssertionError, match="re-imported"):  # another k-core is another cache entry
        load_dataset("beauty", root=p5_root, kcore=3)


def test_load_dataset_cache_roundtrip_with_text_and_timestamps(ml_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    first = load_dataset("movielens", root=ml_root, kcore=0)
    _forbid_import(monkeypatch, "movielens")
    second = load_dataset("movielens", root=ml_root, kcore=0)
    assert_same_dataset(first, second)
    assert second.interactions["timestamp"].tolist()[0] == 964981247.0


def test_load_dataset_reimports_modified_source(p5_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    first = load_dataset("sports", root=p5_root, kcore=0)
    assert first.num_users == 3
    path = p5_root / "amazon14/sports/user_sequence.txt"
    path.write_text(P5_SEQUENCES + "U5 A1 A4\n", encoding="utf-8")
    second = load_dataset("sports", root=p5_root, kcore=0)
    assert second.num_users == 4
    assert sequences_by_user_id(second)["U5"] == ["A1", "A4"]


def test_load_dataset_reimports_same_size_edit_within_a_second(p5_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    path = p5_root / "amazon14/sports/user_sequence.txt"
    base_ns = 1_700_000_000 * 10**9
    os.utime(path, ns=(base_ns, base_ns))
    first = load_dataset("sports", root=p5_root, kcore=0)
    path.write_text(P5_SEQUENCES.replace("U4", "U9"), encoding="utf-8")  # same size
    os.utime(path, ns=(base_ns + 500_000_000, base_ns + 500_000_000))
    second = load_dataset("sports", root=p5_root, kcore=0)
    assert "U4" in set(first.interactions["user_id"])
    assert "U9" in set(second.interactions["user_id"])


def test_load_dataset_reimports_when_imdb_metadata_appears(ml_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    first = load_dataset("movielens", root=ml_root, kcore=0)
    assert first.items["director"].tolist()[0] == ""
    write(ml_root / "movielens/imdb5000_movie_metadata.csv", ML_IMDB)
    second = load_dataset("movielens", root=ml_root, kcore=0)
    assert second.items["director"].tolist()[0] == "John Lasseter"


def test_load_dataset_raw_fixture_through_registry(raw_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_dataset("beauty_raw", root=raw_root, kcore=2)
    # 2-core cascade: U5 and B006 go (1 review each); then B003 has only U2, then U2 has only B001
    assert sequences_by_user_id(dataset) == {"U1": ["B001", "B002"], "U3": ["B004", "B005"],
                                             "U4": ["B005", "B002"], "U6": ["B001", "B004"]}
    assert dataset.items["item_id"].tolist() == ["B002", "B001", "B004", "B005"]
    assert dataset.report.counts["interactions_removed_by_2core"] == 4
    assert dataset.report.counts["users_removed_by_2core"] == 2
    assert dataset.report.counts["items_removed_by_2core"] == 2
    assert dataset.interactions["rating"].tolist() == [5.0, 4.0, 1.0, 5.0, 4.0, 3.0, 4.0, 2.0]

"""Datasets described by YAML: the shipped ones in datasets/, a user's own folder loading with no code
edit (P5 and MovieLens formats), clear errors naming the YAML, and (with real data) unchanged
fingerprints of every shipped dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pandas.testing as pdt
import pytest

from mmq.config import ConfigError
from mmq.data import DATASETS, MissingDataError, chronological_split, leave_one_out, load_dataset
from mmq.data.amazon_office import load_office
from mmq.data.amazon_p5 import load_p5
from mmq.data.amazon_raw import load_amazon_raw
from mmq.data.dataset_config import read_dataset_yaml
from mmq.data.fingerprint import current_fingerprint, dataset_fingerprint, recording_datasets
from mmq.data.movielens import load_movielens
from mmq.data.myntra import load_myntra
from mmq.data.registry import SHIPPED_DATASETS_DIR
from mmq.features.text import TextFeatureConfig, build_item_texts

import test_data_importers as importers  # the hand-written fixture files of the importer tests

SHIPPED = {"beauty", "sports", "toys", "office", "movielens", "movielens_all", "myntra",
           "beauty_raw", "sports_raw", "toys_raw", "office_raw"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# the shipped YAMLs
# ---------------------------------------------------------------------------------------------


def test_every_shipped_name_comes_from_a_yaml():
    assert set(DATASETS) == SHIPPED
    for name, spec in DATASETS.items():
        assert spec.config_path == SHIPPED_DATASETS_DIR / f"{name}.yaml" and spec.name == name
    assert DATASETS["beauty"].expected == {"users": 22363, "items": 12101, "interactions": 198502}
    assert DATASETS["myntra"].default_kcore == 0 and DATASETS["beauty_raw"].expected == {}


@pytest.fixture
def synthetic_root(tmp_path) -> Path:
    """Every shipped layout under one data folder, from the importer tests' hand-written files."""
    root = tmp_path / "data"
    for category in ("beauty", "sports", "toys"):
        write(root / f"amazon14/{category}/user_sequence.txt", importers.P5_SEQUENCES)
    write(root / "amazon14/beauty/item_id_to_int.json", json.dumps({"A1": 10, "A2": 11, "A3": 12}))
    write(root / "amazon14/beauty/products_lookup.csv", ",global_product_id,name\n0,12,Shampoo\n1,10,Lipstick\n")
    write(root / "amazon14/office/Office.inter.json", json.dumps({"0": [0, 1, 2], "3": [1, 2]}))
    write(root / "amazon14/office/Office.item.json", json.dumps(importers.OFFICE_ITEMS))
    base = root / "movielens/ml-latest-small"
    for name, text in (("movies", importers.ML_MOVIES), ("ratings", importers.ML_RATINGS),
                       ("tags", importers.ML_TAGS), ("links", importers.ML_LINKS)):
        write(base / f"{name}.csv", text)
    write(root / "movielens/imdb5000_movie_metadata.csv", importers.ML_IMDB)
    importers.write_zip(root / "movielens/posters.zip", {f"{movie}.jpg": b"\xff\xd8" for movie in (1, 2, 3, 6)})
    importers.write_zip(root / "myntra/styles.csv.zip", {"styles.csv": importers.MYNTRA_STYLES.encode()})
    importers.write_zip(root / "myntra/images.zip", {f"{i}.jpg": b"\xff\xd8" for i in (15970, 44065, 39386)})
    (root / "amazon14_raw").mkdir()
    for path in (importers.FIXTURES / "amazon14_raw").iterdir():
        (root / "amazon14_raw" / path.name).write_bytes(path.read_bytes())
    return root


@pytest.mark.parametrize("name, importer", [
    ("beauty", lambda root: load_p5("beauty", root)),
    ("sports", lambda root: load_p5("sports", root)),
    ("toys", lambda root: load_p5("toys", root)),
    ("office", load_office),
    ("movielens", lambda root: load_movielens(root, require_image=True)),
    ("movielens_all", lambda root: load_movielens(root, require_image=False)),
    ("myntra", load_myntra),
    ("beauty_raw", lambda root: load_amazon_raw("beauty", root)),
])
def test_shipped_yaml_imports_exactly_like_the_importer(synthetic_root, name, importer):
    """The YAML's paths and options reproduce the importer's hard-coded defaults, table for table."""
    from_yaml, direct = DATASETS[name].loader(synthetic_root), importer(synthetic_root)
    pdt.assert_frame_equal(from_yaml.items, direct.items)
    pdt.assert_frame_equal(from_yaml.interactions, direct.interactions)
    assert from_yaml.text_fields == direct.text_fields
    assert dict(from_yaml.report.counts) == dict(direct.report.counts)


# ---------------------------------------------------------------------------------------------
# a user's own folder: no code edit
# ---------------------------------------------------------------------------------------------

SHOP_SEQUENCES = "\n".join(f"u{user} " + " ".join(f"p{(user + step) % 8}" for step in range(5))
                           for user in range(8)) + "\n"
SHOP_YAML = """name: my_shop
format: p5
paths:
  sequences: my_shop/user_sequence.txt
  titles: my_shop/products_lookup.csv
  title_ids: my_shop/item_id_to_int.json
kcore: 5
expected: {users: 8, items: 8, interactions: 40}
"""


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """A P5-format folder under a data directory + its YAML outside the repository."""
    root = tmp_path / "data"
    write(root / "my_shop/user_sequence.txt", SHOP_SEQUENCES)
    write(root / "my_shop/products_lookup.csv",
          ",global_product_id,name\n" + "".join(f"{k},{100 + k},Product {k}\n" for k in range(8)))
    write(root / "my_shop/item_id_to_int.json", json.dumps({f"p{k}": 100 + k for k in range(8)}))
    monkeypatch.setenv("MMQ_DATA_DIR", str(root))
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    return write(tmp_path / "configs/my_shop.yaml", SHOP_YAML)


def test_own_p5_folder_loads_from_its_yaml_path(shop):
    with recording_datasets() as seen:
        dataset = load_dataset(str(shop))
    assert dataset.name == "my_shop" and dataset.text_fields == ("title",)
    assert (dataset.num_users, dataset.num_items, len(dataset.interactions)) == (8, 8, 40)
    assert build_item_texts(dataset, TextFeatureConfig())[:2] == ["Product 0", "Product 1"]
    assert [sequence.tolist() for sequence in dataset.sequences()][:2] == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]]
    assert len(leave_one_out(dataset).test_target) == 8
    assert seen == {str(shop): dataset_fingerprint(dataset)}  # the key resolves again through load_dataset
    assert current_fingerprint(str(shop)) == dataset_fingerprint(dataset)  # read back from the cache


def test_edited_yaml_is_reimported_not_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    write(tmp_path / "data/shop/inter.json", json.dumps({"0": [0, 1, 2], "3": [1, 2]}))
    write(tmp_path / "data/shop/item.json", json.dumps(importers.OFFICE_ITEMS))
    text = "name: shop\nformat: lc_rec\npaths: {interactions: shop/inter.json, items: shop/item.json}\nkcore: 0\n"
    config = write(tmp_path / "shop.yaml", text + "text_fields: [title]\n")
    assert load_dataset(str(config), root=tmp_path / "data").text_fields == ("title",)
    write(config, text + "text_fields: [title, brand]\n")
    edited = load_dataset(str(config), root=tmp_path / "data")
    assert edited.text_fields == ("title", "brand") and edited.items["brand"].tolist() == ["Swingline", "Bic", ""]


def test_own_yaml_dropped_into_mmq_datasets_dir_loads_by_name(shop, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset 'my_shop'"):
        load_dataset("my_shop")
    monkeypatch.setenv("MMQ_DATASETS_DIR", str(shop.parent))
    assert load_dataset("my_shop").num_items == 8
    from scripts.prepare_data import main

    assert main(["my_shop"]) == 0
    assert main([str(shop)]) == 0


def test_own_movielens_folder_with_absolute_paths(tmp_path, monkeypatch):
    """A MovieLens-format folder (ratings + movies only, no posters) anywhere on disk."""
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "elsewhere/ml-mini"
    ratings = "".join(f"{user},{movie},{1 + (user + movie) % 5}.0,{1000 * user + movie}\n"
                      for user in range(1, 7) for movie in range(1, 7) if (user + movie) % 7)
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n" + ratings)
    write(folder / "movies.csv", "movieId,title,genres\n" + "".join(
        f"{movie},Movie {movie} ({1990 + movie}),Drama|Comedy\n" for movie in range(1, 7)))
    config = write(tmp_path / "ml_mini.yaml", f"name: ml_mini\nformat: movielens\npaths:\n"
                                               f"  ratings: {folder / 'ratings.csv'}\n"
                                               f"  movies: {folder / 'movies.csv'}\nkcore: 0\n")
    dataset = load_dataset(str(config), root=tmp_path / "no-data-dir-needed")
    assert dataset.name == "ml_mini" and dataset.num_items == 6 and len(dataset.interactions) == 30
    assert dataset.items["title"].tolist()[0] == "Movie 1" and dataset.items["year"].tolist()[0] == "1991"
    assert (dataset.items["image"] == "").all() and (dataset.items["tags"] == "").all()
    assert dataset.interactions["timestamp"].notna().all() and dataset.interactions["rating"].notna().all()
    split = chronological_split(dataset)
    assert split.train["timestamp"].max() < split.test["timestamp"].min()
    assert "imdb_metadata_missing" not in dataset.report.counts


# ---------------------------------------------------------------------------------------------
# errors name the YAML
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("name: x\nformat: p5\npaths: {sequences: a.txt}\ntext_fiels: [title]\n", r"unknown key\(s\) \['text_fiels'\]"),
    ("name: x\nformat: csv\npaths: {sequences: a.txt}\n", r"format 'csv' is not one of \['amazon_raw', 'lc_rec'"),
    ("name: x\nformat: p5\npaths: {titles: a.csv}\n", r"unknown \[\], missing \['sequences'\]"),
    ("name: x\nformat: p5\npaths: {sequences: a.txt, ratings: r.csv}\n", r"unknown \['ratings'\]"),
    ("name: x\nformat: p5\npaths: {sequences: a.txt}\ntext_fields: [title]\n", r"unknown key\(s\) \['text_fields'\]"),
    ("name: x\nformat: p5\npaths: {sequences: a.txt, titles: t.csv}\n", "both paths.titles"),
    ("name: x\nformat: p5\npaths: {sequences: a.txt}\nexpected: {user: 3}\n", "expected must map"),
    ("name: x\nformat: p5\npaths: {sequences: a.txt}\nkcore: five\n", "kcore must be an integer"),
    ("name: my shop\nformat: p5\npaths: {sequences: a.txt}\n", "name must be a word"),
    ("name: x\nformat: movielens\npaths: {ratings: r.csv, movies: m.csv}\nrequire_image: true\n",
     "require_image: true needs paths.posters"),
    ("name: x\nformat: lc_rec\npaths: {interactions: i.json, items: t.json}\ntext_fields: title\n",
     "text_fields must be a non-empty list"),
])
def test_invalid_yaml_is_an_error_naming_the_file(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        read_dataset_yaml(path)
    assert str(path) in str(info.value)


def test_missing_data_file_names_the_file_and_the_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    write(tmp_path / "data/shop/user_sequence.txt", SHOP_SEQUENCES)
    config = write(tmp_path / "shop.yaml", "name: shop\nformat: p5\npaths:\n  sequences: shop/user_sequence.txt\n"
                                           "  titles: shop/lookup.csv\n  title_ids: shop/ids.json\n")
    with pytest.raises(MissingDataError, match=r"'shop/lookup.csv'.*shop.yaml \(paths.titles\)") as info:
        load_dataset(str(config), root=tmp_path / "data")
    assert str((tmp_path / "data/shop/lookup.csv").resolve()) in str(info.value)
    with pytest.raises(ConfigError, match="dataset config not found: .*nowhere.yaml"):
        load_dataset(str(tmp_path / "nowhere.yaml"))


def test_folder_yaml_name_must_match_file_and_be_unique(tmp_path, monkeypatch):
    write(tmp_path / "extra/shop.yaml", "name: other\nformat: p5\npaths: {sequences: a.txt}\n")
    monkeypatch.setenv("MMQ_DATASETS_DIR", str(tmp_path / "extra"))
    with pytest.raises(ConfigError, match="name 'other' differs from the file name"):
        load_dataset("beauty")
    write(tmp_path / "extra/shop.yaml", "name: beauty\nformat: p5\npaths: {sequences: a.txt}\n")
    (tmp_path / "extra/shop.yaml").rename(tmp_path / "extra/beauty.yaml")
    with pytest.raises(ConfigError, match="dataset 'beauty' is defined twice"):
        load_dataset("beauty")
    monkeypatch.setenv("MMQ_DATASETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="MMQ_DATASETS_DIR=.*absent is not a directory"):
        load_dataset("beauty")


# ---------------------------------------------------------------------------------------------
# real data: every shipped dataset is bit-identical to before the YAMLs
# ---------------------------------------------------------------------------------------------

# dataset_fingerprint of each shipped dataset at its default k-core, recorded with the hard-coded
# registry before datasets/ existed (MMQ_DATA_DIR = the project's shared data)
SHIPPED_FINGERPRINTS = {
    "beauty": "c3070535dd62ac80", "sports": "167a5a73eec02662", "toys": "392adef7954207d8",
    "office": "0b24df57cc281d25", "movielens": "dd685f8afefd2b4c", "movielens_all": "22a742e145bd292a",
    "myntra": "c7b01cf07e648f70",
}


@pytest.mark.realdata
def test_shipped_fingerprints_unchanged(real_data_dir, isolated_dirs):
    found = {name: dataset_fingerprint(load_dataset(name, root=real_data_dir, use_cache=False))
             for name in SHIPPED_FINGERPRINTS}
    assert found == SHIPPED_FINGERPRINTS

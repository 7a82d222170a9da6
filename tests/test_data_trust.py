"""Data you can trust: published statistics are checked (a truncated file is a loud error), corrupt
input names the file and the line or archive member (one test per format), and the image pixel
cache is keyed by the images' content."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmq.data import DataFormatError, DataMismatchError, ImportReport, InteractionDataset, load_dataset
from mmq.data.amazon_office import load_office
from mmq.data.amazon_p5 import load_p5
from mmq.data.amazon_raw import load_amazon_raw
from mmq.data.movielens import load_movielens
from mmq.data.myntra import load_myntra
from mmq.features import images as image_features

import test_data_importers as importers  # the hand-written fixture files of the importer tests

NUM_USERS, NUM_MOVIES = 12, 8
FULL_RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{user},{movie},{1 + (user * movie) % 5}.0,{100000 * user + movie}\n"
    for user in range(1, NUM_USERS + 1) for movie in range(1, NUM_MOVIES + 1))
MOVIES = "movieId,title,genres\n" + "".join(f"{movie},Film {movie} (2001),Drama\n" for movie in range(1, 9))


def write(path: Path, payload: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload.encode("utf-8") if isinstance(payload, str) else payload)
    return path


# ---------------------------------------------------------------------------------------------
# published statistics
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cinema(tmp_path, monkeypatch):
    """A MovieLens-format folder (12 users x 8 movies, every one rated) + a YAML with its statistics."""
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MMQ_ALLOW_DATA_MISMATCH", raising=False)
    folder = tmp_path / "data/cinema"
    write(folder / "ratings.csv", FULL_RATINGS)
    write(folder / "movies.csv", MOVIES)
    return write(tmp_path / "cinema.yaml", f"name: cinema\nformat: movielens\npaths:\n"
                                           f"  ratings: {folder / 'ratings.csv'}\n  movies: {folder / 'movies.csv'}\n"
                                           "kcore: 5\nexpected: {users: 12, items: 8, interactions: 96}\n")


def truncate_ratings(config: Path, fraction: float = 0.5) -> None:
    """Cut ratings.csv at a byte in the middle of a line, as an interrupted copy would."""
    path = config.parent / "data/cinema/ratings.csv"
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * fraction) + 3])


def test_complete_data_matches_its_published_statistics(cinema):
    dataset = load_dataset(str(cinema))
    assert (dataset.num_users, dataset.num_items, len(dataset.interactions)) == (12, 8, 96)


def test_truncated_file_is_a_loud_error_naming_every_difference(cinema):
    truncate_ratings(cinema)
    with pytest.raises(DataMismatchError) as info:
        load_dataset(str(cinema))
    message = str(info.value)
    assert "dataset 'cinema' does not match its published statistics" in message and str(cinema) in message
    assert "users: got 6, expected 12" in message and "interactions: got 48, expected 96" in message
    assert "items:" not in message  # only the counts that differ
    for remedy in ("allow_mismatch=True", "MMQ_ALLOW_DATA_MISMATCH=1", "scripts/prepare_data.py --allow-mismatch"):
        assert remedy in message
    assert info.value.differences == {"users": (6, 12), "interactions": (48, 96)}
    with pytest.raises(DataMismatchError):  # the processed cache written by the first load is checked too
        load_dataset(str(cinema))


def test_mismatch_can_be_allowed_in_code_or_environment(cinema, monkeypatch, caplog):
    truncate_ratings(cinema)
    assert load_dataset(str(cinema), allow_mismatch=True).num_users == 6
    assert "differs from its published statistics" in caplog.text
    monkeypatch.setenv("MMQ_ALLOW_DATA_MISMATCH", "1")
    assert load_dataset(str(cinema)).num_users == 6


def test_only_the_default_kcore_is_checked(cinema):
    truncate_ratings(cinema)
    assert load_dataset(str(cinema), kcore=0).num_users == 7  # no published numbers for other k-cores
    config_text = cinema.read_text().replace("expected: {users: 12, items: 8, interactions: 96}\n", "")
    unchecked = write(cinema.parent / "unchecked.yaml", config_text.replace("name: cinema", "name: unchecked"))
    assert load_dataset(str(unchecked)).num_users == 6  # no expected statistics: nothing to check


def test_shipped_name_on_a_partial_copy_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MMQ_ALLOW_DATA_MISMATCH", raising=False)
    root = tmp_path / "data"
    for name in ("movies", "ratings", "tags", "links"):
        write(root / f"movielens/ml-latest-small/{name}.csv", getattr(importers, f"ML_{name.upper()}"))
    importers.write_zip(root / "movielens/posters.zip", {"1.jpg": b"\xff\xd8"})
    with pytest.raises(DataMismatchError, match=r"dataset 'movielens'.*\n  users: got 0, expected 610"):
        load_dataset("movielens", root=root)
    assert len(load_dataset("movielens", root=root, kcore=0).interactions) == 2  # other k-core: unchecked


def test_prepare_data_exit_codes(cinema, capsys):
    from scripts.prepare_data import main

    assert main([str(cinema)]) == 0
    truncate_ratings(cinema)
    assert main([str(cinema)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main([str(cinema), "--allow-mismatch"]) == 0
    assert "users 6 (EXPECTED 12)" in capsys.readouterr().out
    (cinema.parent / "data/cinema/movies.csv").unlink()
    assert main([str(cinema), "--no-cache"]) == 2


# ---------------------------------------------------------------------------------------------
# corrupt input names the file and the line or member
# ---------------------------------------------------------------------------------------------


def test_p5_non_utf8_names_file_line_and_column(tmp_path):
    write(tmp_path / "amazon14/toys/user_sequence.txt", b"U1 A1 A2\nU2 A2 A3\nU3 A\xff1 A2\n")
    with pytest.raises(DataFormatError,
                       match=r"toys/user_sequence.txt, line 3, column 5: not valid UTF-8 \(byte 0xff\)"):
        load_p5("toys", tmp_path)


@pytest.mark.parametrize("file_name, payload, message", [
    ("products_lookup.csv", ',global_product_id,name\n0,12,"Shampoo\n1,10,Lipstick\n',
     r"products_lookup.csv, line 2: malformed CSV .*runs on to line 3, an unclosed quote"),
    ("products_lookup.csv", ',global_product_id,name\n0,12,"Shampoo" Extra\n',
     r"products_lookup.csv, line 2: malformed CSV"),
    ("products_lookup.csv", ',global_product_id,name\n0,12,Shampoo\n1,10,Lipstick,surplus\n',
     r"products_lookup.csv, line 3: 4 fields, the header has 3"),
    ("item_id_to_int.json", '{"A1": 10,\n "A2": 11,\n "A3": ',
     r"item_id_to_int.json, line 3, column 8: invalid JSON.*truncated"),
    ("item_id_to_int.json", '{"A1": 10,\n "A2" 11}', r"item_id_to_int.json, line 2, column 7: invalid JSON"),
])
def test_p5_title_files(tmp_path, file_name, payload, message):
    write(tmp_path / "amazon14/beauty/user_sequence.txt", importers.P5_SEQUENCES)
    write(tmp_path / "amazon14/beauty/item_id_to_int.json", json.dumps({"A1": 10}))
    write(tmp_path / "amazon14/beauty/products_lookup.csv", ",global_product_id,name\n0,10,Lipstick\n")
    write(tmp_path / f"amazon14/beauty/{file_name}", payload)
    with pytest.raises(DataFormatError, match=message):
        load_p5("beauty", tmp_path)


@pytest.mark.parametrize("file_name, payload, message", [
    ("Office.item.json", json.dumps(importers.OFFICE_ITEMS, indent=1)[:-40],
     r"Office.item.json, line \d+, column \d+: invalid JSON.*looks truncated"),
    ("Office.inter.json", b'{"0": [0, 1],\n "1": [2, 0],\n "\xe9": [1]}',
     r"Office.inter.json, line 3, column 3: not valid UTF-8"),
    ("Office.inter.json", "[[0, 1]]", r"Office.inter.json: expected a JSON object \{user: \[item, ...\]\}, got list"),
])
def test_lc_rec_json(tmp_path, file_name, payload, message):
    write(tmp_path / "amazon14/office/Office.inter.json", json.dumps({"0": [0, 1]}))
    write(tmp_path / "amazon14/office/Office.item.json", json.dumps(importers.OFFICE_ITEMS))
    write(tmp_path / f"amazon14/office/{file_name}", payload)
    with pytest.raises(DataFormatError, match=message):
        load_office(tmp_path)


@pytest.fixture
def raw_root(tmp_path) -> Path:
    for path in (importers.FIXTURES / "amazon14_raw").iterdir():
        write(tmp_path / "amazon14_raw" / path.name, path.read_bytes())
    return tmp_path


def test_raw_truncated_gzip_names_file_and_last_good_line(raw_root):
    path = raw_root / "amazon14_raw/reviews_Beauty_5.json.gz"
    path.write_bytes(path.read_bytes()[:-60])
    with pytest.raises(DataFormatError,
                       match=r"reviews_Beauty_5.json.gz: truncated or corrupt gzip file after line \d+"):
        load_amazon_raw("beauty", raw_root)
    path.write_bytes(b"this is not gzip at all\n")
    with pytest.raises(DataFormatError, match=r"reviews_Beauty_5.json.gz: truncated or corrupt gzip file after line 0"):
        load_amazon_raw("beauty", raw_root)


def test_raw_non_utf8_and_malformed_lines(raw_root):
    meta = raw_root / "amazon14_raw/meta_Beauty.json.gz"
    lines = gzip.decompress(meta.read_bytes()).split(b"\n")
    meta.write_bytes(gzip.compress(b"\n".join(lines[:2] + [b'{"asin": "B9", "title": "Caf\xe9"}'] + lines[2:])))
    with pytest.raises(DataFormatError, match=r"meta_Beauty.json.gz, line 3, column \d+: not valid UTF-8"):
        load_amazon_raw("beauty", raw_root)
    # a line that is neither JSON nor a Python literal is counted with its file and line, not fatal
    meta.write_bytes(gzip.compress(b"\n".join(lines[:2] + [b'{"asin": "B9", "title": '] + lines[2:])))
    dataset = load_amazon_raw("beauty", raw_root)
    assert "meta_Beauty.json.gz:3" in dataset.report.examples["malformed_meta_rows"]


@pytest.fixture
def ml_root(tmp_path) -> Path:
    base = tmp_path / "movielens/ml-latest-small"
    for name in ("movies", "ratings", "tags", "links"):
        write(base / f"{name}.csv", getattr(importers, f"ML_{name.upper()}"))
    importers.write_zip(tmp_path / "movielens/posters.zip", {"1.jpg": b"\xff\xd8"})
    return tmp_path


@pytest.mark.parametrize("file_name, payload, message", [
    ("ratings.csv", importers.ML_RATINGS.replace("2,2,2.5,1445714835", '2,2,"2.5,1445714835'),
     r"ratings.csv, line 5: malformed CSV .*unclosed quote"),
    ("movies.csv", importers.ML_MOVIES.encode().replace(b"Jumanji", b"Jum\xe2nji"),
     r"movies.csv, line 3, column 6: not valid UTF-8"),
    ("tags.csv", importers.ML_TAGS + '4,2,"board" game,8\n', r"tags.csv, line 9: malformed CSV"),
])
def test_movielens_csv(ml_root, file_name, payload, message):
    write(ml_root / f"movielens/ml-latest-small/{file_name}", payload)
    with pytest.raises(DataFormatError, match=message):
        load_movielens(ml_root)


def test_movielens_truncated_posters_zip(ml_root):
    path = ml_root / "movielens/posters.zip"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataFormatError, match=r"posters.zip: not a readable zip archive, truncated or corrupt"):
        load_movielens(ml_root)


def _styles_zip(payload: bytes, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("styles.csv", payload)
    return buffer.getvalue()


def test_myntra_archive_member_errors(tmp_path):
    importers.write_zip(tmp_path / "myntra/images.zip", {"15970.jpg": b"\xff\xd8"})
    styles = tmp_path / "myntra/styles.csv.zip"
    good = importers.MYNTRA_STYLES.encode()
    write(styles, _styles_zip(good)[:40])
    with pytest.raises(DataFormatError, match=r"styles.csv.zip: not a readable zip archive"):
        load_myntra(tmp_path)
    stored = bytearray(_styles_zip(good, zipfile.ZIP_STORED))
    stored[stored.index(b"Turtle")] ^= 0x20  # flip one bit of the member's data: its CRC-32 fails
    write(styles, bytes(stored))
    with pytest.raises(DataFormatError, match=r"styles.csv.zip, member styles.csv: cannot be read.*CRC"):
        load_myntra(tmp_path)
    write(styles, _styles_zip(good.replace(b"Navy Blue Shirt", b"Navy Bl\xfc Shirt")))
    with pytest.raises(DataFormatError,
                       match=r"styles.csv.zip, member styles.csv, line 2, column \d+: not valid UTF-8"):
        load_myntra(tmp_path)
    write(styles, _styles_zip(good + b'1,Men,"Apparel,Topwear\n'))
    with pytest.raises(DataFormatError, match=r"member styles.csv, line 7: malformed CSV"):
        load_myntra(tmp_path)


# ---------------------------------------------------------------------------------------------
# image pixel cache keyed by the images' content
# ---------------------------------------------------------------------------------------------


def _jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_pixel_cache_sees_a_replaced_photo(tmp_path, monkeypatch):
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    archive = tmp_path / "data/photos.zip"
    importers.write_zip(archive, {f"{index}.jpg": _jpeg((200, 40 * index, 0)) for index in range(3)})
    items = pd.DataFrame({"item_index": range(3), "item_id": ["a", "b", "c"],
                          "image": [f"photos.zip:{index}.jpg" for index in range(3)]})
    dataset = InteractionDataset("shop", items, pd.DataFrame(), ImportReport("shop"), ())
    calls = []
    real = image_features.decode_images
    monkeypatch.setattr(image_features, "decode_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = np.array(image_features.item_image_pixels(dataset, 8, root=tmp_path / "data", progress=False).pixels)
    again = np.array(image_features.item_image_pixels(dataset, 8, root=tmp_path / "data", progress=False).pixels)
    assert len(calls) == 1 and np.array_equal(first, again)
    importers.write_zip(archive, {f"{index}.jpg": _jpeg((0, 0, 250) if index == 1 else (200, 40 * index, 0))
                                  for index in range(3)})  # same names, one photo replaced
    replaced = image_features.item_image_pixels(dataset, 8, root=tmp_path / "data", progress=False).pixels
    assert len(calls) == 2
    assert not np.array_equal(replaced[1], first[1]) and np.array_equal(replaced[0], first[0])

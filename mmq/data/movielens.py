"""MovieLens latest-small + one poster per movie (+ IMDB-5000 metadata where it joins).

Item text fields: title (year stripped), year, genres, tags (users' tags, most frequent first),
director, actors, plot_keywords. Image: ``movielens/posters.zip:<movieId>.jpg``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from mmq.data.paths import data_dir, require_file
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

MOVIELENS_TEXT_FIELDS = ("title", "year", "genres", "tags", "director", "actors", "plot_keywords")
YEAR_PATTERN = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{0,4})?\)\s*$")
MAX_TAGS = 10


def split_title_year(raw_title: str) -> tuple[str, str]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", "1995")``; no year -> ``(title, "")``."""
    match = YEAR_PATTERN.match(raw_title.strip())
    if match is None:
        return raw_title.strip(), ""
    return match.group("title").strip(), match.group("year")


def _read_csv(path: Path, columns: list[str], report: ImportReport, numeric: list[str]) -> pd.DataFrame:
    def count_bad_line(fields: list[str]) -> None:
        report.add(f"malformed_rows_{path.name}", example=",".join(fields))
        return None  # drop the row (it is counted)

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines=count_bad_line, engine="python")
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing}; found {list(frame.columns)}")
    bad = np.zeros(len(frame), dtype=bool)
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad |= values.isna().to_numpy()
        frame[column] = values
    if bad.any():
        report.add(f"malformed_rows_{path.name}", int(bad.sum()), example=str(frame.loc[bad].iloc[0].to_dict()))
    return frame.loc[~bad].reset_index(drop=True)


def _imdb_metadata(root: Path | None, links: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    path = (data_dir() if root is None else Path(root)) / "movielens/imdb5000_movie_metadata.csv"
    if not path.is_file():
        report.add("imdb_metadata_missing")
        return pd.DataFrame(columns=["movieId", "director", "actors", "plot_keywords"])
    imdb = pd.read_csv(path, dtype=str, keep_default_na=False)
    imdb["imdbId"] = imdb["movie_imdb_link"].str.extract(r"tt(\d+)", expand=False)
    imdb = imdb.dropna(subset=["imdbId"]).drop_duplicates("imdbId")
    imdb["imdbId"] = imdb["imdbId"].astype(int)
    imdb["actors"] = imdb[["actor_1_name", "actor_2_name", "actor_3_name"]].apply(
        lambda row: ", ".join(name for name in row if name), axis=1)
    imdb["plot_keywords"] = imdb["plot_keywords"].str.replace("|", ", ", regex=False)
    imdb = imdb.rename(columns={"director_name": "director"})
    joined = links[["movieId", "imdbId"]].merge(imdb[["imdbId", "director", "actors", "plot_keywords"]], on="imdbId")
    return joined.drop(columns="imdbId")


def load_movielens(root: Path | None = None, *, require_image: bool = True) -> InteractionDataset:
    """Load ratings (user, movie, rating, timestamp) and movie text + poster references."""
    report = ImportReport(dataset="movielens")
    base = "movielens/ml-latest-small"
    ratings = _read_csv(require_file(f"{base}/ratings.csv", root), ["userId", "movieId", "rating", "timestamp"],
                        report, numeric=["movieId", "rating", "timestamp"])
    movies = _read_csv(require_file(f"{base}/movies.csv", root), ["movieId", "title", "genres"], report,
                       numeric=["movieId"])
    tags = _read_csv(require_file(f"{base}/tags.csv", root), ["userId", "movieId", "tag", "timestamp"], report,
                     numeric=["movieId"])
    links = _read_csv(require_file(f"{base}/links.csv", root), ["movieId", "imdbId"], report,
                      numeric=["movieId", "imdbId"])
    posters_path = require_file("movielens/posters.zip", root)
    with zipfile.ZipFile(posters_path) as archive:
        posters = {Path(name).stem for name in archive.namelist() if name.lower().endswith(".jpg")}

    movies["movieId"] = movies["movieId"].astype(int)
    split = movies["title"].map(split_title_year)
    movies["title"] = split.str[0]
    movies["year"] = split.str[1]
    movies["genres"] = movies["genres"].replace("(no genres listed)", "").str.replace("|", ", ", regex=False)
    tags["tag"] = tags["tag"].str.strip().str.lower()
    tag_counts = tags[tags["tag"] != ""].groupby(["movieId", "tag"]).size().reset_index(name="count")
    tag_counts = tag_counts.sort_values(["movieId", "count", "tag"], ascending=[True, False, True])
    tag_text = tag_counts.groupby("movieId")["tag"].apply(lambda values: ", ".join(values.head(MAX_TAGS)))
    movies["tags"] = movies["movieId"].map(tag_text).fillna("")
    links["movieId"] = links["movieId"].astype(int)
    links["imdbId"] = links["imdbId"].astype(int)
    movies = movies.merge(_imdb_metadata(root, links, report), on="movieId", how="left")
    movies["item_id"] = movies["movieId"].astype(str)
    has_poster = movies["item_id"].isin(posters)
    movies["image"] = np.where(has_poster, "movielens/posters.zip:" + movies["item_id"] + ".jpg", "")
    report.add("movies_without_poster", int((~has_poster).sum()))
    if require_image:
        movies = movies.loc[has_poster]
    report.add("movies_with_imdb_metadata", int(movies["director"].fillna("").ne("").sum()))
    items = movies[["item_id", *MOVIELENS_TEXT_FIELDS, "image"]].reset_index(drop=True)
    user_ids = ratings["userId"].astype(str).to_numpy()
    item_ids = ratings["movieId"].astype(int).astype(str).to_numpy()
    dataset = build_dataset("movielens", items, user_ids, item_ids, report=report,
                            text_fields=MOVIELENS_TEXT_FIELDS, timestamps=ratings["timestamp"].to_numpy(),
                            ratings=ratings["rating"].to_numpy())
    rated = np.zeros(dataset.num_items, dtype=bool)
    rated[dataset.interactions["item_index"].to_numpy()] = True
    report.add("items_without_ratings", int((~rated).sum()))
    return dataset

"""MovieLens latest-small + one poster per movie (+ IMDB-5000 metadata where it joins).

Item text fields: title (year stripped), year, genres, tags (users' tags, most frequent first),
director, actors, plot_keywords. Image: ``movielens/posters.zip:<movieId>.jpg``.

Every file is a parameter of :func:`load_movielens_files`, so any folder in the MovieLens CSV format
(ml-latest, ml-25m, ...) loads through a dataset YAML with ``format: movielens``; tags, links, the
IMDB table and the posters are optional there. A CSV that a strict parser cannot read (an unclosed
quote) or that is not UTF-8 is an error naming the file and line; rows with a bad id or an extra
field are counted in the import report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmq.data.paths import require_file, resolve_data_path
from mmq.data.reading import check_csv, open_zip
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

MOVIELENS_TEXT_FIELDS = ("title", "year", "genres", "tags", "director", "actors", "plot_keywords")
YEAR_PATTERN = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{0,4})?\)\s*$")
MAX_TAGS = 10
MOVIELENS_FOLDER = "movielens/ml-latest-small"
IMDB_FILE = "movielens/imdb5000_movie_metadata.csv"
POSTERS_FILE = "movielens/posters.zip"
IMDB_COLUMNS = ("director_name", "actor_1_name", "actor_2_name", "actor_3_name", "plot_keywords", "movie_imdb_link")


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

    check_csv(path)  # an unclosed quote would otherwise swallow the rest of the file as one bad row
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


def _tag_text(movies: pd.DataFrame, tags: pd.DataFrame) -> pd.Series:
    """Per movie: its users' tags, lower-cased, most frequent first (at most ``MAX_TAGS``)."""
    tags["tag"] = tags["tag"].str.strip().str.lower()
    tag_counts = tags[tags["tag"] != ""].groupby(["movieId", "tag"]).size().reset_index(name="count")
    if tag_counts.empty:
        return pd.Series("", index=movies.index)
    tag_counts = tag_counts.sort_values(["movieId", "count", "tag"], ascending=[True, False, True])
    tag_text = tag_counts.groupby("movieId")["tag"].apply(lambda values: ", ".join(values.head(MAX_TAGS)))
    return movies["movieId"].map(tag_text).fillna("")


def _imdb_metadata(path: Path | None, links: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    if path is None or not path.is_file():
        if path is not None:
            report.add("imdb_metadata_missing")
        return pd.DataFrame(columns=["movieId", "director", "actors", "plot_keywords"])
    check_csv(path)
    imdb = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted(set(IMDB_COLUMNS) - set(imdb.columns))
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing} of the IMDB-5000 table")
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
    folder = MOVIELENS_FOLDER
    return load_movielens_files("movielens", ratings=f"{folder}/ratings.csv", movies=f"{folder}/movies.csv",
                                tags=f"{folder}/tags.csv", links=f"{folder}/links.csv", imdb=IMDB_FILE,
                                posters=POSTERS_FILE, require_image=require_image, root=root)


def load_movielens_files(name: str, *, ratings: str, movies: str, tags: str | None = None, links: str | None = None,
                         imdb: str | None = None, posters: str | None = None, require_image: bool = False,
                         root: Path | None = None) -> InteractionDataset:
    """Load a MovieLens-format folder; ``imdb`` may be absent on disk (counted), the others must exist."""
    if require_image and posters is None:
        raise ValueError(f"{name}: require_image needs a posters archive")
    if imdb is not None and links is None:
        raise ValueError(f"{name}: the IMDB table joins through links.csv; give links too")
    report = ImportReport(dataset=name)
    ratings_path, movies_path = require_file(ratings, root), require_file(movies, root)
    rating_table = _read_csv(ratings_path, ["userId", "movieId", "rating", "timestamp"], report,
                             numeric=["movieId", "rating", "timestamp"])
    movie_table = _read_csv(movies_path, ["movieId", "title", "genres"], report, numeric=["movieId"])
    tag_table = None
    if tags is not None:
        tag_table = _read_csv(require_file(tags, root), ["userId", "movieId", "tag", "timestamp"], report,
                              numeric=["movieId"])
    link_table = None
    if links is not None:
        link_table = _read_csv(require_file(links, root), ["movieId", "imdbId"], report,
                               numeric=["movieId", "imdbId"])
    poster_ids: set[str] = set()
    if posters is not None:
        with open_zip(require_file(posters, root)) as archive:
            poster_ids = {Path(member).stem for member in archive.namelist() if member.lower().endswith(".jpg")}
    movie_table["movieId"] = movie_table["movieId"].astype(int)
    split = movie_table["title"].map(split_title_year)
    movie_table["title"] = split.str[0]
    movie_table["year"] = split.str[1]
    genres = movie_table["genres"].replace("(no genres listed)", "")
    movie_table["genres"] = genres.str.replace("|", ", ", regex=False)
    movie_table["tags"] = _tag_text(movie_table, tag_table) if tag_table is not None else ""
    if link_table is not None:
        link_table["movieId"] = link_table["movieId"].astype(int)
        link_table["imdbId"] = link_table["imdbId"].astype(int)
    imdb_path = None if imdb is None else resolve_data_path(imdb, root)
    movie_table = movie_table.merge(_imdb_metadata(imdb_path, link_table, report), on="movieId", how="left")
    movie_table["item_id"] = movie_table["movieId"].astype(str)
    has_poster = movie_table["item_id"].isin(poster_ids)
    movie_table["image"] = np.where(has_poster, f"{posters}:" + movie_table["item_id"] + ".jpg", "")
    if posters is not None:
        report.add("movies_without_poster", int((~has_poster).sum()))
    if require_image:
        movie_table = movie_table.loc[has_poster]
    report.add("movies_with_imdb_metadata", int(movie_table["director"].fillna("").ne("").sum()))
    items = movie_table[["item_id", *MOVIELENS_TEXT_FIELDS, "image"]].reset_index(drop=True)
    user_ids = rating_table["userId"].astype(str).to_numpy()
    item_ids = rating_table["movieId"].astype(int).astype(str).to_numpy()
    dataset = build_dataset(name, items, user_ids, item_ids, report=report,
                            text_fields=MOVIELENS_TEXT_FIELDS, timestamps=rating_table["timestamp"].to_numpy(),
                            ratings=rating_table["rating"].to_numpy())
    rated = np.zeros(dataset.num_items, dtype=bool)
    rated[dataset.interactions["item_index"].to_numpy()] = True
    report.add("items_without_ratings", int((~rated).sum()))
    return dataset

"""A seeded query-product search benchmark built from Myntra's product attributes (graded, ESCI-style labels).

No real query log can be fetched here (ESCI, WANDS), so queries are *generated*: each names an article type plus a
random subset of gender, colour, usage, season and brand of a sampled product, rendered through a template with
synonyms ("navy casual shirts for men", "peter england jeans"). Relevance is graded against every product in the
catalogue from attribute agreement (ESCI's Exact / Substitute / Complement / Irrelevant):

- 3 exact: every attribute the query names matches (a ``Unisex`` product matches a ``men`` / ``women`` query);
- 2 substitute: same article type and compatible gender, but another named attribute differs;
- 1 related: same sub-category (e.g. a shirt for a t-shirt query);
- 0 otherwise.

Splits are **by attribute combination**: the (slot, value) set of a test query never occurs in training, and valid /
test queries are rendered only with templates and surface forms (synonyms) that training never uses, so a model
cannot win by memorising templates. Train combinations may be rendered several times (different templates).

The benchmark is a pure function of the catalogue and :class:`QueryBenchmarkConfig` (its ``seed``);
:func:`benchmark_sha256` fingerprints the generated queries so a report can say which benchmark it scored.
External benchmarks (e.g. ESCI for online users) load through :func:`load_query_files`: labels naming unknown
products are counted and refused, queries with no relevant product are excluded and counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from mmq.data.schema import InteractionDataset

SLOTS = ("brand", "gender", "colour", "usage", "season", "article")
ATTRIBUTE_COLUMN = {"gender": "gender", "colour": "baseColour", "usage": "usage", "season": "season",
                    "article": "articleType", "brand": "brand"}
GENDER_WORDS = ("Men", "Women", "Boys", "Girls", "Unisex")
MAX_QUERY_CHARS = 256   # longer queries are truncated (and counted) by :func:`clean_query`

# Surface forms: (train forms, held-out forms used only by valid/test). Values not listed use their lower-cased
# name in training and a mechanical variant (singular / plural) at test time.
GENDER_FORMS = {
    "Men": (("men", "mens", "men's", "male"), ("gents", "man")),
    "Women": (("women", "womens", "women's", "female"), ("ladies", "woman")),
    "Boys": (("boys", "boy's"), ("kids boys", "boy")),
    "Girls": (("girls", "girl's"), ("kids girls", "girl")),
    "Unisex": (("unisex",), ("all genders",)),
}
ARTICLE_FORMS = {
    "Tshirts": (("tshirts", "t-shirts", "tees"), ("t shirts", "tee shirts")),
    "Shirts": (("shirts",), ("shirt", "button down shirts")),
    "Casual Shoes": (("casual shoes", "sneakers"), ("casual footwear", "everyday shoes")),
    "Watches": (("watches",), ("wristwatch", "wrist watches")),
    "Sports Shoes": (("sports shoes", "running shoes"), ("trainers", "athletic shoes")),
    "Kurtas": (("kurtas",), ("kurta",)),
    "Tops": (("tops",), ("top", "blouses")),
    "Handbags": (("handbags", "hand bags"), ("purses", "handbag")),
    "Heels": (("heels", "high heels"), ("heeled sandals", "stilettos")),
    "Sunglasses": (("sunglasses",), ("shades", "sun glasses")),
    "Wallets": (("wallets",), ("wallet", "billfolds")),
    "Flip Flops": (("flip flops",), ("slippers", "flip-flops")),
    "Sandals": (("sandals",), ("sandal",)),
    "Briefs": (("briefs",), ("underwear briefs",)),
    "Belts": (("belts",), ("belt", "waist belts")),
    "Backpacks": (("backpacks",), ("backpack", "school bags")),
    "Socks": (("socks",), ("sock", "ankle socks")),
    "Formal Shoes": (("formal shoes",), ("dress shoes", "office shoes")),
    "Perfume and Body Mist": (("perfume", "body mist"), ("fragrance", "perfumes")),
    "Jeans": (("jeans",), ("denims", "denim jeans")),
    "Shorts": (("shorts",), ("half pants",)),
    "Trousers": (("trousers",), ("pants", "trouser")),
    "Flats": (("flats",), ("flat shoes",)),
    "Bra": (("bra",), ("bras", "brassiere")),
    "Dresses": (("dresses",), ("dress", "frocks")),
    "Sarees": (("sarees",), ("saree", "sari")),
    "Earrings": (("earrings",), ("ear rings", "earring")),
    "Deodorant": (("deodorant",), ("deo", "deodorants")),
}
COLOUR_FORMS = {
    "Navy Blue": (("navy blue", "navy"), ("dark blue",)),
    "Grey": (("grey",), ("gray",)),
    "Off White": (("off white",), ("ivory", "off-white")),
    "Multi": (("multicolour", "multi colour"), ("multicolored", "colourful")),
    "Maroon": (("maroon",), ("wine red", "dark red")),
    "Olive": (("olive",), ("olive green",)),
    "Black": (("black",), ("jet black",)),
    "White": (("white",), ("pure white",)),
    "Blue": (("blue",), ("blue coloured",)),
    "Red": (("red",), ("bright red",)),
}
USAGE_FORMS = {
    "Casual": (("casual",), ("everyday", "daily wear")),
    "Sports": (("sports", "sporty"), ("athletic", "gym")),
    "Ethnic": (("ethnic", "traditional"), ("indian wear", "festive")),
    "Formal": (("formal", "office"), ("business", "workwear")),
    "Party": (("party",), ("partywear", "evening")),
    "Smart Casual": (("smart casual",), ("semi formal",)),
    "Travel": (("travel",), ("travelling",)),
}
SEASON_FORMS = {
    "Summer": (("summer",), ("summertime", "hot weather")),
    "Winter": (("winter",), ("cold weather", "wintertime")),
    "Fall": (("fall",), ("autumn",)),
    "Spring": (("spring",), ("springtime",)),
}
FORMS = {"gender": GENDER_FORMS, "article": ARTICLE_FORMS, "colour": COLOUR_FORMS, "usage": USAGE_FORMS,
         "season": SEASON_FORMS}

# Templates: ``[...]`` segments are dropped when a slot inside them is absent; ``{slot}`` is a surface form.
TRAIN_TEMPLATES = (
    "[{brand}] [{colour}] [{usage}] {article} [{gender}] [{season}]",
    "[{gender}] [{brand}] {article} [{colour}] [{usage}] [{season}]",
    "[{colour}] [{season}] {article} [for {gender}] [by {brand}] [{usage}]",
    "buy [{usage}] [{colour}] {article} [{gender}] [{brand}] [{season}]",
    "[{brand}] [{gender}] [{usage}] {article} [in {colour}] [for {season}]",
)
HELD_OUT_TEMPLATES = (
    "show me [{colour}] [{brand}] {article} [for {gender}] [for {usage}] [{season}]",
    "looking for [{usage}] {article} [from {brand}] [in {colour}] [for {gender}] [this {season}]",
    "[{gender}] [{season}] [{usage}] {article} [{colour} colour] [{brand} brand]",
    "best [{brand}] [{colour}] {article} [for {gender}] [{usage} use] [{season} collection]",
)
# how many optional attributes a query names besides its article type (probabilities for 0, 1, 2, 3, 4)
EXTRA_SLOT_PROBABILITIES = (0.15, 0.35, 0.3, 0.15, 0.05)
EXTRA_SLOTS = ("gender", "colour", "usage", "season", "brand")
EXTRA_SLOT_WEIGHTS = (0.35, 0.3, 0.12, 0.08, 0.15)


class QueryError(ValueError):
    """A query or label file that cannot be used (empty query, unknown product, malformed row)."""


@dataclasses.dataclass(frozen=True)
class QueryBenchmarkConfig:
    """Generated Myntra query benchmark (the seed fixes it; change it only to build a different benchmark)."""

    dataset: str = "myntra"
    seed: int = 0
    num_test: int = 1000          # attribute combinations (= queries) in test
    num_valid: int = 500          # ... in validation (model selection)
    num_train: int = 12000        # attribute combinations in training
    train_renderings: int = 2     # training queries per combination (different templates / synonyms)
    min_brand_products: int = 20  # brands with fewer products are never named in a query

    def __post_init__(self) -> None:
        for name in ("num_test", "num_valid", "num_train", "train_renderings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Query:
    """One query: its text, the attributes it names, and its split."""

    query_id: str
    text: str
    slots: tuple[tuple[str, str], ...]   # (slot, catalogue value), sorted by slot
    split: str

    @property
    def combination(self) -> tuple[tuple[str, str], ...]:
        return self.slots


def clean_query(text: str, *, max_chars: int = MAX_QUERY_CHARS) -> tuple[str, bool]:
    """Normalise whitespace; an empty query is an error, an overlong one is truncated (returns ``truncated``)."""
    if not isinstance(text, str):
        raise QueryError(f"a query must be a string, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise QueryError("empty query: the text is empty or only whitespace")
    if len(cleaned) > max_chars:
        return cleaned[:max_chars], True
    return cleaned, False


def product_brand(title: str) -> str:
    """The words of a Myntra display name before its first gender word ("Peter England Men ..." -> "Peter England")."""
    words = title.split()
    for position, word in enumerate(words):
        if word in GENDER_WORDS:
            return " ".join(words[:position])
    return ""


def catalogue_attributes(dataset: InteractionDataset) -> pd.DataFrame:
    """The attribute table the benchmark labels against, one row per item (item_index order)."""
    items = dataset.items.sort_values("item_index")
    missing = [column for column in ("title", "gender", "subCategory", "articleType", "baseColour", "usage", "season")
               if column not in items.columns]
    if missing:
        raise QueryError(f"dataset {dataset.name!r} lacks the product attributes {missing}; the query benchmark needs "
                         "a Myntra-style catalogue (format: myntra)")
    table = items[["gender", "subCategory", "articleType", "baseColour", "usage", "season"]].astype(str).copy()
    table["brand"] = items["title"].astype(str).map(product_brand)
    return table.reset_index(drop=True)


def product_texts(dataset: InteractionDataset) -> list[str]:
    """What the product tower, BM25 and the rerankers read: the display name (which nearly always names brand,
    gender, colour and article type) + usage + season (which it does not), e.g.
    ``"Turtle Check Men Navy Blue Shirt | Casual | Fall"``. Short on purpose: the catalogue is re-encoded at every
    validation of the two-tower."""
    items = dataset.items.sort_values("item_index")
    texts = []
    for row in items.itertuples(index=False):
        parts = [str(row.title), str(row.usage), str(row.season)]
        texts.append(" | ".join(part for part in parts if part.strip() and part != "NA"))
    return texts


def _render(template: str, forms: dict[str, str]) -> str:
    def segment(match: re.Match) -> str:
        inner = match.group(1)
        names = re.findall(r"{(\w+)}", inner)
        return inner.format(**forms) if all(name in forms for name in names) else ""

    text = re.sub(r"\[([^\]]*)\]", segment, template)
    return " ".join(text.format(**forms).split())


def _forms(slot: str, value: str, held_out: bool, taken: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Surface forms of ``value``; ``taken`` = other catalogue values' names in this slot, never used as a synonym."""
    if slot == "brand":
        return (value.lower(),)
    base = value.lower()
    table = FORMS[slot]
    if value in table:
        forms = tuple(form for form in table[value][1 if held_out else 0] if form not in taken)
        return forms or (base,)
    if not held_out:
        return (base,)
    variant = base[:-1] if base.endswith("s") and len(base) > 3 else base + "s"
    return (variant,) if slot == "article" and variant not in taken else (base,)


class QueryBenchmark:
    """Generated queries + graded relevance over a catalogue."""

    def __init__(self, attributes: pd.DataFrame, queries: list[Query], *, excluded_no_relevant: int = 0,
                 config: QueryBenchmarkConfig | None = None) -> None:
        self.attributes = attributes
        self.queries = queries
        self.config = config
        self.excluded_no_relevant = excluded_no_relevant
        # integer codes per attribute (string comparisons over 44k products per query are too slow for training)
        self._values: dict[str, dict[str, int]] = {}
        self._codes: dict[str, np.ndarray] = {}
        for slot, column in {**ATTRIBUTE_COLUMN, "subcategory": "subCategory"}.items():
            codes, uniques = pd.factorize(attributes[column])
            self._codes[slot] = codes.astype(np.int32)
            self._values[slot] = {value: code for code, value in enumerate(uniques)}
        self._unisex = self._values["gender"].get("Unisex", -2)
        self._article_subcategory = (attributes.groupby("articleType")["subCategory"]
                                     .agg(lambda values: values.value_counts().index[0]).to_dict())

    @property
    def num_items(self) -> int:
        return len(self.attributes)

    def split(self, name: str) -> list[Query]:
        return [query for query in self.queries if query.split == name]

    def grades(self, query: Query, items: np.ndarray | None = None) -> np.ndarray:
        """Relevance grade 0..3 (int8) of every catalogue item for ``query``, or of ``items`` only."""
        def codes(slot: str) -> np.ndarray:
            return self._codes[slot] if items is None else self._codes[slot][items]

        slots = dict(query.slots)
        article = codes("article") == self._values["article"].get(slots["article"], -1)
        gender_ok = np.ones(article.shape, dtype=bool)
        if "gender" in slots:
            gender = codes("gender")
            gender_ok = gender == self._values["gender"].get(slots["gender"], -1)
            if slots["gender"] in ("Men", "Women"):
                gender_ok |= gender == self._unisex
        exact = article & gender_ok
        for slot, value in slots.items():
            if slot not in ("article", "gender"):
                exact &= codes(slot) == self._values[slot].get(value, -1)
        subcategory = self._values["subcategory"].get(self._article_subcategory.get(slots["article"]), -1)
        grades = (codes("subcategory") == subcategory).astype(np.int8)
        grades[article & gender_ok] = 2
        grades[exact] = 3
        return grades

    def sha256(self) -> str:
        return benchmark_sha256(self.queries)

    def summary(self) -> dict:
        """Counts per split, exact-match sizes and slot usage (for the report)."""
        out: dict = {"sha256": self.sha256(), "excluded_no_relevant": self.excluded_no_relevant,
                     "num_items": self.num_items}
        for name in ("train", "valid", "test"):
            queries = self.split(name)
            if not queries:
                continue
            entry = {"queries": len(queries), "combinations": len({query.slots for query in queries}),
                     "mean_named_attributes": round(float(np.mean([len(query.slots) for query in queries])), 3)}
            if name != "train":
                exact = np.array([int((self.grades(query) == 3).sum()) for query in queries])
                entry.update(exact_median=int(np.median(exact)), exact_p90=int(np.percentile(exact, 90)),
                             exact_max=int(exact.max()), exact_min=int(exact.min()))
            out[name] = entry
        return out


def benchmark_sha256(queries: Iterable[Query]) -> str:
    digest = hashlib.sha256()
    for query in queries:
        digest.update(json.dumps([query.query_id, query.text, query.slots, query.split]).encode())
    return digest.hexdigest()


def generate_benchmark(dataset: InteractionDataset, config: QueryBenchmarkConfig = QueryBenchmarkConfig()
                       ) -> QueryBenchmark:
    """Sample attribute combinations from real products, split them, render queries (pure function of the seed)."""
    attributes = catalogue_attributes(dataset)
    rng = np.random.default_rng(config.seed)
    brand_counts = attributes["brand"].value_counts()
    usable_brands = set(brand_counts.index[(brand_counts >= config.min_brand_products) & (brand_counts.index != "")])
    wanted = config.num_test + config.num_valid + config.num_train
    combinations: dict[tuple, None] = {}
    attempts = 0
    records = attributes.to_dict("records")
    while len(combinations) < wanted:
        attempts += 1
        if attempts > 50 * wanted:
            raise QueryError(f"only {len(combinations)} distinct attribute combinations found in the catalogue "
                             f"after {attempts} draws; ask for fewer than {wanted} queries")
        product = records[int(rng.integers(len(records)))]
        available = [slot for slot in EXTRA_SLOTS if _slot_value(product, slot, usable_brands)]
        count = min(int(rng.choice(len(EXTRA_SLOT_PROBABILITIES), p=EXTRA_SLOT_PROBABILITIES)), len(available))
        weights = np.array([EXTRA_SLOT_WEIGHTS[EXTRA_SLOTS.index(slot)] for slot in available])
        chosen = (rng.choice(available, size=count, replace=False, p=weights / weights.sum()).tolist()
                  if count else [])
        slots = {"article": product["articleType"], **{slot: _slot_value(product, slot, usable_brands)
                                                       for slot in chosen}}
        combinations[tuple(sorted(slots.items()))] = None
    names = {slot: frozenset(value.lower() for value in attributes[column].unique())
             for slot, column in ATTRIBUTE_COLUMN.items()}
    ordered = list(combinations)
    order = rng.permutation(len(ordered))
    queries: list[Query] = []
    for rank, position in enumerate(order):
        combination = ordered[position]
        if rank < config.num_test:
            split, renderings, held_out = "test", 1, True
        elif rank < config.num_test + config.num_valid:
            split, renderings, held_out = "valid", 1, True
        else:
            split, renderings, held_out = "train", config.train_renderings, False
        templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
        texts = set()
        for rendering in range(renderings):
            forms = {slot: str(rng.choice(_forms(slot, value, held_out, names[slot] - {value.lower()})))
                     for slot, value in combination}
            text = _render(str(templates[int(rng.integers(len(templates)))]), forms)
            if text in texts:
                continue
            texts.add(text)
            queries.append(Query(f"{split}-{len(queries):06d}", text, combination, split))
    return QueryBenchmark(attributes, queries, config=config)


def _slot_value(product: dict, slot: str, usable_brands: set[str]) -> str:
    value = str(product[ATTRIBUTE_COLUMN[slot]])
    if slot == "brand":
        return value if value in usable_brands else ""
    return "" if value in ("", "NA", "nan") else value


def load_query_files(attributes: pd.DataFrame, item_ids: list[str], queries_path: Path, labels_path: Path,
                     split: str = "test") -> tuple[list[tuple[str, str]], dict[str, dict[int, int]], dict[str, int]]:
    """Read an external benchmark: ``queries.tsv`` (query_id, text) and ``labels.tsv`` (query_id, item_id, grade).

    Labels naming products absent from the catalogue are counted and refused (an error listing the first few);
    queries without any label of grade > 0 are excluded and counted; empty queries are an error; overlong ones
    are truncated and counted. Returns (queries, labels by query -> {item_index: grade}, counts).
    """
    index_of = {item_id: position for position, item_id in enumerate(item_ids)}
    counts = {"truncated_queries": 0, "unknown_product_labels": 0, "queries_without_relevant": 0}
    queries = []
    for line_number, line in enumerate(Path(queries_path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise QueryError(f"{queries_path}:{line_number}: expected 2 tab-separated fields, got {len(fields)}")
        try:
            text, truncated = clean_query(fields[1])
        except QueryError as error:
            raise QueryError(f"{queries_path}:{line_number}: {error}") from None
        counts["truncated_queries"] += int(truncated)
        queries.append((fields[0], text))
    labels: dict[str, dict[int, int]] = {}
    unknown = []
    for line_number, line in enumerate(Path(labels_path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2].strip().lstrip("-").isdigit():
            raise QueryError(f"{labels_path}:{line_number}: expected query_id<TAB>item_id<TAB>integer grade")
        if fields[1] not in index_of:
            unknown.append(f"line {line_number}: {fields[1]}")
            continue
        labels.setdefault(fields[0], {})[index_of[fields[1]]] = int(fields[2])
    counts["unknown_product_labels"] = len(unknown)
    if unknown:
        raise QueryError(f"{labels_path}: {len(unknown)} labels name products not in the catalogue "
                         f"({'; '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}); refusing the label file")
    kept = []
    for query_id, text in queries:
        if any(grade > 0 for grade in labels.get(query_id, {}).values()):
            kept.append((query_id, text))
        else:
            counts["queries_without_relevant"] += 1
    return kept, labels, counts

"""Faster query encoders for the served chapter-2 two-tower: the same ``texts -> [n, dim]`` contract, several runtimes.

:func:`load_query_encoder` turns a loaded :class:`~baselines.two_tower.model.TwoTower` (its query tower: MiniLM +
mean pooling + L2 norm + the residual head) into ``encode(texts) -> float32 [n, dim]`` with unit-norm rows, exactly
the contract of the ``encode`` closure in :func:`baselines.serving.config.load_engine`. Kinds (:data:`KINDS`):

- ``torch``: the tower as serving runs it today, ``model.encode(texts, "query")`` under ``inference_mode``.
- ``torch_int8``: ``torch.ao.quantization.quantize_dynamic`` (int8 per-channel weights, dynamic int8 activations)
  of every ``nn.Linear`` of a *copy* of the query tower (transformer + head); the tower itself is never modified.
  Dynamic activation scales are taken per batch, so with both int8 kinds a row moves slightly with its batchmates.
- ``onnx``: the query tower (transformer + mean pooling + normalisation + head, one graph) exported with
  ``torch.onnx.export`` and run by onnxruntime (CPU provider); the tokenizer runs in Rust (``tokenizers``) with the
  tower's truncation (``query_max_tokens``).
- ``onnx_int8``: that graph through ``onnxruntime.quantization.quantize_dynamic`` with int8 per-channel weights
  (per-tensor weights lose ~4 points of cosine on this tower: mean cosine to fp32 0.956 vs 0.992, 200 valid queries).
- ``static``: a static (non-contextual) bag-of-tokens encoder distilled from the tower, see :class:`StaticSettings`.

Every kind pins its runtime to ``num_threads`` (default 1: one worker per core is fastest for single queries):
``torch.set_num_threads`` for the torch kinds and the static encoder's head, ``intra_op_num_threads`` /
``inter_op_num_threads`` for onnxruntime.
ONNX files and the static encoder are cached by content under ``<cache>/query_encoders/`` (the query tower's weights,
its token limit, the settings and, for ``static``, the training texts), written atomically, so serving loads them
instead of exporting or training again.

Quality (:func:`retrieval_quality`) is measured through exact inner-product search over the run's own product
embeddings, so every kind is compared against the same index.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mmq import artifacts
from mmq.data.paths import cache_dir
from mmq.features.text import texts_sha256

if TYPE_CHECKING:
    from baselines.two_tower.model import TwoTower
    from baselines.two_tower.queries import QueryBenchmark
    from baselines.two_tower.search import QuerySearchConfig

LOGGER = logging.getLogger(__name__)
KINDS = ("torch", "torch_int8", "onnx", "onnx_int8", "static")
QueryEncoder = Callable[[list[str]], np.ndarray]
FORMAT_VERSION = 1          # bump when an artifact's layout or the export recipe changes (new cache keys)
BATCH_SIZE = 256            # texts per forward pass for the transformer kinds (length-sorted, as TwoTower.encode)
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def encoder_cache_dir() -> Path:
    return cache_dir() / "query_encoders"


# --- the public entry point -------------------------------------------------------------------------------------

def load_query_encoder(kind: str, model: TwoTower, config: QuerySearchConfig, *, num_threads: int = 1,
                       static: StaticSettings | None = None, benchmark: QueryBenchmark | None = None,
                       product_texts: list[str] | None = None, progress: bool = False) -> QueryEncoder:
    """``encode(texts) -> float32 [len(texts), dim]`` (unit-norm rows) of ``model``'s query tower through ``kind``.

    ``config``: the two-tower run's config (its token limit is read from ``model``). ``static``: the static
    encoder's settings (default :class:`StaticSettings`); ``benchmark`` / ``product_texts`` are its training data
    (default: :func:`~baselines.two_tower.search.load_benchmark` of ``config``), needed only when the cached
    artifact is absent or to compute its key. ``num_threads``: torch / onnxruntime threads of the returned encoder.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown query encoder kind {kind!r}; choose one of {list(KINDS)}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    model.eval()
    if kind == "torch":
        torch.set_num_threads(num_threads)
        return _torch_encoder(model)
    if kind == "torch_int8":
        torch.set_num_threads(num_threads)
        return _torch_int8_encoder(model)
    if kind in ("onnx", "onnx_int8"):
        path = onnx_model_path(model, config, quantized=kind == "onnx_int8")
        torch.set_num_threads(num_threads)
        return OnnxQueryEncoder(path, query_tokenizer(model), num_threads=num_threads)
    encoder = static_query_encoder(model, config, static or StaticSettings(), benchmark=benchmark,
                                   product_texts=product_texts, progress=progress)
    torch.set_num_threads(num_threads)
    return encoder


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 C-contiguous rows scaled to unit L2 norm (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


# --- torch ---------------------------------------------------------------------------------------------------------

class QueryTower(nn.Module):
    """The query side of a TwoTower as one module over token tensors: transformer -> pooling -> norm -> head.

    Shares (does not copy) the tower's modules; :func:`copy.deepcopy` it before changing weights.
    """

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.encoder = model.query_encoder
        self.head = model.query_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.head(self.encoder(features)["sentence_embedding"])


def query_tokenizer(model: TwoTower):
    """A Rust ``tokenizers.Tokenizer`` identical to the tower's query tokenizer call (truncation at the tower's
    ``query_max_tokens``, padding to the longest text); ~10x less per-call overhead than the transformers wrapper."""
    from tokenizers import Tokenizer

    wrapper = model.query_encoder.tokenizer
    tokenizer = Tokenizer.from_str(wrapper.backend_tokenizer.to_str())
    tokenizer.enable_truncation(max_length=model.max_tokens["query"])
    tokenizer.enable_padding(pad_id=wrapper.pad_token_id, pad_token=wrapper.pad_token)
    return tokenizer


def tokenize(tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """int64 ``input_ids`` / ``attention_mask`` / ``token_type_ids`` ``[n, longest]`` of ``texts``."""
    encodings = tokenizer.encode_batch(list(texts))
    return {"input_ids": np.array([encoding.ids for encoding in encodings], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids for encoding in encodings], dtype=np.int64)}


def _length_batches(texts: Sequence[str], run: Callable[[list[str]], np.ndarray], dim: int) -> np.ndarray:
    """``run`` over length-sorted batches of at most BATCH_SIZE texts (less padding), rows back in input order."""
    if len(texts) <= BATCH_SIZE:
        return run(list(texts))
    order = np.argsort([len(text) for text in texts], kind="stable")
    out = np.empty((len(texts), dim), dtype=np.float32)
    for start in range(0, len(texts), BATCH_SIZE):
        rows = order[start:start + BATCH_SIZE]
        out[rows] = run([texts[row] for row in rows])
    return out


def _torch_encoder(model: TwoTower) -> QueryEncoder:
    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return unit_rows(model.encode(list(texts), "query"))

    return encode


def quantized_query_tower(model: TwoTower) -> nn.Module:
    """An int8 dynamically quantized copy of the query tower (every ``nn.Linear``: attention, FFN and head), with
    per-channel weight scales: per-tensor scales (``quantize_dynamic``'s default) give a mean cosine to the fp32
    tower of 0.936 on 300 valid queries, per-channel 0.973, at the same speed."""
    with warnings.catch_warnings():   # torch.ao.quantization is deprecated in favour of torchao (not a dependency)
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        tower = copy.deepcopy(QueryTower(model)).eval()
        return quantize_dynamic(tower, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def _torch_int8_encoder(model: TwoTower) -> QueryEncoder:
    tower = quantized_query_tower(model)
    tokenizer = query_tokenizer(model)

    def run(batch: list[str]) -> np.ndarray:
        features = {name: torch.from_numpy(value) for name, value in tokenize(tokenizer, batch).items()}
        with torch.inference_mode():
            return unit_rows(tower(**features).numpy())

    return lambda texts: _length_batches(texts, run, model.dim)


# --- ONNX ----------------------------------------------------------------------------------------------------------

def tower_fingerprint(model: TwoTower) -> str:
    """sha256 of everything that changes the query tower's outputs: its weights (encoder + head), token limit and
    tokenizer (vocabulary + normalisation rules)."""
    digest = hashlib.sha256()
    digest.update(f"query_max_tokens={model.max_tokens['query']}".encode())
    tokenizer = json.loads(model.query_encoder.tokenizer.backend_tokenizer.to_str())
    for state in ("truncation", "padding"):   # set by the last call (TwoTower.base pads and truncates): not content
        tokenizer.pop(state, None)
    digest.update(json.dumps(tokenizer, sort_keys=True).encode("utf-8"))
    for prefix, module in (("encoder", model.query_encoder), ("head", model.query_head)):
        for name, value in sorted(module.state_dict().items()):
            value = value.detach().cpu().contiguous()
            digest.update(f"{prefix}.{name}:{value.dtype}:{tuple(value.shape)}".encode())
            digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def export_onnx(model: TwoTower, path: Path) -> None:
    """Export the query tower to ``path`` (dynamic batch and sequence axes; outputs the head's unit vectors).

    Uses the TorchScript-based exporter (``dynamo=False``): it exports this tower in ~2 s with no extra dependency,
    and :func:`onnx_model_path`'s check below verifies it against torch on two shapes before the file is kept.
    """
    tower = QueryTower(model).eval()
    sample = tokenize(query_tokenizer(model), ["men navy blue casual shirt", "red"])
    arguments = tuple(torch.from_numpy(sample[name]) for name in ONNX_INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS} | {"embedding": {0: "batch"}}
    with warnings.catch_warnings():   # tracer notes about shape-constant branches; the check below covers them
        warnings.simplefilter("ignore")
        with torch.inference_mode():
            torch.onnx.export(tower, arguments, str(path), input_names=list(ONNX_INPUTS), output_names=["embedding"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)


def onnx_model_path(model: TwoTower, config: QuerySearchConfig | None = None, *, quantized: bool = False) -> Path:
    """The cached ONNX file of ``model``'s query tower (exported, and int8-quantized, on first use)."""
    key = artifacts.short_hash(tower_fingerprint(model), FORMAT_VERSION, length=16)
    fp32 = encoder_cache_dir() / f"onnx-{key}.onnx"
    if not fp32.exists():
        started = time.perf_counter()
        with artifacts.atomic_path(fp32) as temporary:
            export_onnx(model, temporary)
            _check_onnx(model, temporary, min_cosine=0.9999)
        LOGGER.info("exported the query tower to %s in %.1f s", fp32, time.perf_counter() - started)
    if not quantized:
        return fp32
    int8 = encoder_cache_dir() / f"onnx_int8-{key}.onnx"
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        started = time.perf_counter()
        with artifacts.atomic_path(int8) as temporary:
            quantize_dynamic(str(fp32), str(temporary), weight_type=QuantType.QInt8, per_channel=True)
            _check_onnx(model, temporary, min_cosine=0.9)
        LOGGER.info("quantized %s to int8 in %.1f s", int8, time.perf_counter() - started)
    return int8


def _check_onnx(model: TwoTower, path: Path, *, min_cosine: float) -> None:
    """Refuse an exported graph whose outputs drift from torch on a padded batch and on a single text."""
    encoder = OnnxQueryEncoder(path, query_tokenizer(model), num_threads=1)
    for texts in (["women black running shoes nike", "a", "kurta"], ["blue"]):
        with torch.inference_mode():
            expected = model.encode(texts, "query")
        cosine = (encoder(texts) * expected).sum(axis=1)
        if not cosine.min() >= min_cosine:
            raise RuntimeError(f"{path.name}: ONNX output departs from torch (cosine {cosine.min():.4f} < "
                               f"{min_cosine}); the export is not kept")


class OnnxQueryEncoder:
    """onnxruntime session over an exported query tower + the Rust tokenizer; ``self(texts)`` -> unit rows."""

    def __init__(self, path: str | os.PathLike, tokenizer, *, num_threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [item.name for item in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.tokenizer = tokenizer
        self.path = Path(path)

    def _run(self, batch: list[str]) -> np.ndarray:
        features = tokenize(self.tokenizer, batch)
        return unit_rows(self.session.run(None, {name: features[name] for name in self.inputs})[0])

    def __call__(self, texts: list[str]) -> np.ndarray:
        return _length_batches(texts, self._run, self.dim)


# --- static ------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StaticSettings:
    """A static query encoder distilled from the tower: ``head(normalize(mean(E[tokens])))``.

    Two steps:

    1. ``model2vec.distill.distill_from_model`` on (a copy of) the tower's own transformer: every token of the
       vocabulary goes through the transformer alone and its mean-pooled output becomes its static vector (no PCA,
       so the vectors stay in the transformer's output space, where the tower's head applies), SIF-weighted.
       ``vocabulary="words"`` also adds the training texts' frequent words as whole tokens (model2vec embeds each
       word from its subword sequence in context), ``"subword"`` keeps MiniLM's WordPiece vocabulary.
    2. Written here because model2vec cannot do it: model2vec distils the *base* transformer's token outputs only,
       it has no place for the tower's trained head (a non-linear MLP on the pooled vector) and its ``train``
       module fits classifiers, not regression onto a teacher's vectors. So the static vectors (and, with
       ``head="tower"``, a copy of the tower's query head applied on top) are fine-tuned with a cosine loss to
       reproduce the fp32 tower's query embeddings of the chapter-2 *training* queries and of the product texts
       (never valid or test queries). ``head="none"`` trains the vectors to give the final embedding directly (no
       matrix product at query time).

    The defaults were chosen on the VALID queries only (``scripts/bench_query_encoder.py --sweep``, scored after
    every epoch; reports/bench_query_encoder_sweep.json), valid NDCG@10 against 0.661 for the fp32 tower:
    distillation alone 0.307 (subword) / 0.382 (words); fine-tuned, subword + tower head with vector / head learning
    rates 3e-4 / 1e-3: 0.637 after 1 epoch (mean cosine to the tower 0.855), 0.631 after 3; 1e-3 / 1e-3: 0.636
    after 1, 0.615 after 6; 3e-3 / 1e-4: 0.612 at best (epoch 2); 1e-3 / 3e-3: 0.631; words vocabulary 0.620-0.624;
    no head (words, 1e-3): 0.614. More epochs fit the training texts better but drift on valid's held-out wording
    (the per-token vectors of words seen in training move away from those of unseen synonyms), so one epoch with a
    small vector learning rate and a larger one for the shared head generalises best.
    """

    vocabulary: str = "subword"        # "subword" (MiniLM's WordPiece) | "words" (+ training-text words)
    min_word_count: int = 2
    sif_coefficient: float = 1e-4      # model2vec's SIF weighting of frequent tokens
    head: str = "tower"                # "tower" (the tower's query head, fine-tuned too) | "none"
    epochs: int = 1                    # 0: distillation only (no fine-tuning)
    learning_rate: float = 3e-4        # static vectors (Adam; vectors start rescaled to mean norm 1)
    head_learning_rate: float = 1e-3
    batch_size: int = 256
    seed: int = 0
    num_threads: int = 2               # torch threads for distillation and fine-tuning (not for serving)

    def __post_init__(self) -> None:
        if self.vocabulary not in ("subword", "words"):
            raise ValueError(f"vocabulary must be 'subword' or 'words', got {self.vocabulary!r}")
        if self.head not in ("tower", "none"):
            raise ValueError(f"head must be 'tower' or 'none', got {self.head!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.num_threads < 1 or self.min_word_count < 1:
            raise ValueError("epochs >= 0, batch_size >= 1, min_word_count >= 1 and num_threads >= 1 required")
        if not 0 < self.sif_coefficient < 1 or self.learning_rate <= 0 or self.head_learning_rate <= 0:
            raise ValueError("sif_coefficient in (0, 1) and positive learning rates required")


STATIC_VECTORS = "static_vectors"     # model2vec's save_pretrained folder inside a static artifact
STATIC_HEAD = "head.npz"
STATIC_META = "static.json"


class StaticQueryEncoder:
    """A static encoder: model2vec ``StaticModel`` (tokenizer + token vectors, mean + L2 norm) -> optional head.

    The head is the tower's :class:`~baselines.two_tower.model.Head` run by torch (so ``torch.set_num_threads``
    governs its one matrix product, as for the other kinds); a text with no known token gets the mean vector's
    direction, so every row stays a finite unit vector.
    """

    def __init__(self, static, head: dict[str, np.ndarray] | None = None, meta: dict[str, Any] | None = None,
                 directory: Path | None = None) -> None:
        from baselines.two_tower.model import Head

        self.static = static
        self.meta = meta or {}
        self.directory = directory
        self.head_weights = None if head is None else {name: np.asarray(value, dtype=np.float32)
                                                       for name, value in head.items()}
        self.head: nn.Module | None = None
        if self.head_weights is not None:
            hidden, dim = self.head_weights["inner_weight"].shape
            self.head = Head(dim, hidden).eval()
            self.head.load_state_dict({name.replace("_", "."): torch.from_numpy(value.copy())
                                       for name, value in self.head_weights.items()})
        vectors = np.asarray(static.embedding, dtype=np.float32)
        self.fallback = unit_rows(vectors.mean(axis=0, keepdims=True))
        self.dim = int(vectors.shape[1])

    @classmethod
    def load(cls, directory: str | os.PathLike) -> StaticQueryEncoder:
        """Read a saved artifact (:meth:`save`)."""
        from model2vec import StaticModel

        directory = Path(directory)
        meta = artifacts.read_json(directory / STATIC_META)
        static = StaticModel.from_pretrained(str(directory / STATIC_VECTORS), normalize=True)
        head = None
        if (directory / STATIC_HEAD).exists():
            with np.load(directory / STATIC_HEAD) as archive:
                head = {name: archive[name] for name in archive.files}
        return cls(static, head, meta, directory)

    def save(self, directory: Path) -> None:
        """model2vec's own folder for the vectors + tokenizer, the head as .npz, the metadata last."""
        self.static.save_pretrained(str(directory / STATIC_VECTORS))
        if self.head_weights is not None:
            with artifacts.atomic_path(directory / STATIC_HEAD) as temporary:
                with open(temporary, "wb") as handle:
                    np.savez(handle, **self.head_weights)
        artifacts.write_json(directory / STATIC_META, self.meta)

    def pooled(self, texts: list[str]) -> np.ndarray:
        pooled = np.asarray(self.static.encode(list(texts), normalize=True, use_multiprocessing=False),
                            dtype=np.float32).reshape(len(texts), -1)
        empty = ~np.isfinite(pooled).all(axis=1) | (np.abs(pooled).sum(axis=1) == 0)
        if empty.any():
            pooled[empty] = self.fallback
        return pooled

    def __call__(self, texts: list[str]) -> np.ndarray:
        pooled = self.pooled(texts)
        if self.head is None:
            return unit_rows(pooled)
        with torch.inference_mode():
            return unit_rows(self.head(torch.from_numpy(pooled)).numpy())


def static_training_texts(benchmark: QueryBenchmark, product_texts: list[str]) -> list[str]:
    """The static encoder's training texts: the cleaned training queries, then the product texts (each once)."""
    from baselines.two_tower.search import query_texts

    queries, _ = query_texts(benchmark.split("train"))
    return list(dict.fromkeys([*queries, *product_texts]))


def static_artifact_path(model: TwoTower, settings: StaticSettings, texts: list[str]) -> Path:
    import model2vec

    fields = {name: value for name, value in dataclasses.asdict(settings).items() if name != "num_threads"}
    key = artifacts.short_hash(tower_fingerprint(model), fields, texts_sha256(texts), model2vec.__version__,
                               FORMAT_VERSION, length=16)
    return encoder_cache_dir() / f"static-{key}"


def static_query_encoder(model: TwoTower, config: QuerySearchConfig, settings: StaticSettings = StaticSettings(), *,
                         benchmark: QueryBenchmark | None = None, product_texts: list[str] | None = None,
                         progress: bool = False) -> StaticQueryEncoder:
    """The static encoder of ``model`` under ``settings``: read from its content-keyed cache folder, or distilled,
    fine-tuned and saved there (atomically: a staging folder renamed into place)."""
    if benchmark is None or product_texts is None:
        from baselines.two_tower.search import load_benchmark

        benchmark, product_texts, _ = load_benchmark(config)
    texts = static_training_texts(benchmark, product_texts)
    directory = static_artifact_path(model, settings, texts)
    if (directory / STATIC_META).exists():
        try:
            return StaticQueryEncoder.load(directory)
        except (OSError, ValueError, KeyError) as error:
            LOGGER.warning("ignoring unreadable static encoder %s: %s", directory, error)
    encoder = train_static(model, config, settings, texts, progress=progress)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=_mkdir(directory.parent)))
    try:
        encoder.save(staging)
        os.chmod(staging, 0o777 & ~artifacts._umask())   # mkdtemp makes it 0700; an artifact gets ordinary modes
        if not (directory / STATIC_META).exists():     # another worker may have finished the same artifact first
            shutil.rmtree(directory, ignore_errors=True)   # an unreadable leftover
            try:
                os.replace(staging, directory)
            except OSError:                              # lost a race to another writer: theirs is as good
                LOGGER.info("%s was written by another process meanwhile", directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOGGER.info("static query encoder saved to %s", directory)
    encoder.directory = directory
    return encoder


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def teacher_embeddings(model: TwoTower, config: QuerySearchConfig, texts: list[str], *,
                       progress: bool = False) -> np.ndarray:
    """The fp32 tower's query embeddings of ``texts`` (frozen encoder: through the cached encoder outputs)."""
    from baselines.two_tower.model import cached_base

    if config.trainable_layers == 0:
        return unit_rows(model.apply_head(cached_base(model, texts, "query", config, progress=progress), "query"))
    with torch.inference_mode():
        return unit_rows(model.encode(texts, "query", batch_size=config.encode_batch_size, progress=progress))


def distill_static(model: TwoTower, settings: StaticSettings, texts: list[str]):
    """model2vec's distillation of the tower's transformer (a deep copy; the tower is untouched)."""
    from model2vec.distill import distill_from_model

    vocabulary = None
    if settings.vocabulary == "words":
        counts = Counter(word for text in texts for word in re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower()))
        vocabulary = sorted(word for word, count in counts.items() if count >= settings.min_word_count)
    transformer = copy.deepcopy(model.query_encoder[0].auto_model).eval()
    with warnings.catch_warnings(), _quiet("model2vec", "skeletoken"):
        warnings.simplefilter("ignore")
        static = distill_from_model(transformer, model.query_encoder.tokenizer, vocabulary=vocabulary, device="cpu",
                                    pca_dims=None, sif_coefficient=settings.sif_coefficient, quantize_to="float32")
        static.max_length = model.max_tokens["query"]   # the tower's query truncation (in static tokens)
    return static


class _quiet:
    """Raise the named loggers to ERROR for a block (model2vec logs each step, and its max_length change, loudly)."""

    def __init__(self, *names: str) -> None:
        self.loggers = [logging.getLogger(name) for name in names]

    def __enter__(self) -> None:
        self.levels = [logger.level for logger in self.loggers]
        for logger in self.loggers:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        for logger, level in zip(self.loggers, self.levels):
            logger.setLevel(level)


def train_static(model: TwoTower, config: QuerySearchConfig, settings: StaticSettings, texts: list[str], *,
                 progress: bool = False, distilled=None,
                 on_epoch: Callable[[int, StaticQueryEncoder], None] | None = None) -> StaticQueryEncoder:
    """Distil (or take ``distilled``, a model2vec ``StaticModel`` of :func:`distill_static`) and fine-tune for
    ``settings.epochs`` epochs; returns the encoder in memory (:func:`static_query_encoder` caches it).

    ``on_epoch(epoch, encoder)`` (the settings sweep) is called after distillation (epoch 0) and after each epoch.
    """
    import model2vec

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads)
    started = time.perf_counter()
    try:
        static = copy.deepcopy(distilled) if distilled is not None else distill_static(model, settings, texts)
        distill_seconds = time.perf_counter() - started
        targets = torch.from_numpy(teacher_embeddings(model, config, texts, progress=progress))
        tokens = [np.asarray(ids, dtype=np.int64) for ids in static.tokenize(texts)]
        keep = np.flatnonzero([ids.size > 0 for ids in tokens])
        if settings.epochs and not keep.size:
            raise ValueError("no training text has a token in the static vocabulary; nothing to fine-tune on")
        vectors = torch.from_numpy(np.array(static.embedding, dtype=np.float32))
        vectors /= vectors.norm(dim=1).mean().clamp_min(1e-12)      # a uniform scale: the outputs do not change
        vectors = nn.Parameter(vectors)
        head = copy.deepcopy(model.query_head).float().train() if settings.head == "tower" else None
        if head is not None:
            for parameter in head.parameters():
                parameter.requires_grad_(True)
        meta = {"settings": dataclasses.asdict(settings), "tower_fingerprint": tower_fingerprint(model),
                "texts": len(texts), "texts_sha256": texts_sha256(texts), "trained_texts": int(keep.size),
                "vocabulary_size": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
                "distill_seconds": round(distill_seconds, 1), "model2vec": model2vec.__version__, "epoch_losses": []}

        def snapshot() -> StaticQueryEncoder:
            copied = copy.copy(static)
            copied.embedding = vectors.detach().numpy().copy()
            weights = None if head is None else {name.replace(".", "_"): value.detach().numpy().copy()
                                                 for name, value in head.state_dict().items()}
            return StaticQueryEncoder(copied, weights, dict(meta))

        if on_epoch is not None:
            on_epoch(0, snapshot())
        groups = [{"params": [vectors], "lr": settings.learning_rate}]
        if head is not None:
            groups.append({"params": list(head.parameters()), "lr": settings.head_learning_rate})
        optimizer = torch.optim.Adam(groups)
        generator = np.random.default_rng(settings.seed)
        for epoch in range(1, settings.epochs + 1):
            order = keep[generator.permutation(keep.size)]
            losses = []
            for start in tqdm(range(0, order.size, settings.batch_size), desc=f"static epoch {epoch}",
                              disable=not progress, leave=False):
                rows = order[start:start + settings.batch_size]
                lengths = [tokens[row].size for row in rows]
                flat = torch.from_numpy(np.concatenate([tokens[row] for row in rows]))
                offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64))
                pooled = F.normalize(F.embedding_bag(flat, vectors, offsets, mode="mean"), dim=-1)
                output = head(pooled) if head is not None else pooled
                loss = (1.0 - (output * targets[rows]).sum(dim=-1)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            meta["epoch_losses"].append(round(float(np.mean(losses)), 5))
            if on_epoch is not None:
                on_epoch(epoch, snapshot())
        meta["seconds"] = round(time.perf_counter() - started, 1)
        return snapshot()
    finally:
        torch.set_num_threads(previous_threads)


# --- quality ---------------------------------------------------------------------------------------------------------

def retrieval_quality(encode: QueryEncoder, benchmark: QueryBenchmark, split: str, product_embeddings: np.ndarray, *,
                      reference: np.ndarray | None = None, ks: tuple[int, ...] = (10,),
                      index_factory: str = "Flat") -> tuple[dict[str, float], np.ndarray]:
    """``split``'s queries through ``encode`` and exact inner-product search over ``product_embeddings``:
    ``ndcg@k`` / ``recall@k`` (+ ``mean_cosine`` to ``reference``, the fp32 tower's query embeddings) and the
    query embeddings themselves."""
    from baselines.two_tower.search import dense_search, evaluate_ranked, query_texts

    queries = benchmark.split(split)
    embeddings = encode(query_texts(queries)[0])
    ranked, _ = dense_search(product_embeddings, embeddings, max(ks), index_factory)
    metrics, _ = evaluate_ranked(benchmark, queries, ranked, ks)
    quality = {name: value for name, value in metrics.items() if name.split("@")[0] in ("ndcg", "recall")}
    if reference is not None:
        quality["mean_cosine"] = round(float((embeddings * reference).sum(axis=1).mean()), 6)
    return quality, embeddings

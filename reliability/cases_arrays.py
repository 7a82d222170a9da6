"""Category ``arrays``: non-finite, huge and mis-shaped embeddings before faiss and the tokenizers."""

from __future__ import annotations

import sys

import numpy as np

from reliability.checks import expect_error, verdict
from reliability.core import Case, Outcome, Sandbox, declare, describe, one_line, single_threaded

CATEGORY = "arrays"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)


def _vectors(rows: int = 300, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)


@case("arrays_nan_before_faiss", "NaN rows -> ValueError naming the rows before faiss sees them", fast=True)
def nan_before_faiss(box: Sandbox) -> Outcome:
    from baselines.faiss_ann.index import IndexSpec, build_index

    vectors = _vectors()
    vectors[[5, 9], 2] = np.nan
    return expect_error(lambda: build_index(vectors, IndexSpec(name="flat", factory="Flat")), types=(ValueError,),
                        names=["NaN", "[5, 9]"])


@case("arrays_inf_before_tokenizer", "an inf value -> ValueError naming the row before RQ-KMeans fits", fast=True)
def inf_before_tokenizer(box: Sandbox) -> Outcome:
    from baselines.sid_tokenizers import RQKMeansTokenizer

    vectors = _vectors()
    vectors[11, 0] = np.inf
    with single_threaded():
        return expect_error(lambda: RQKMeansTokenizer(num_levels=2, codebook_size=4).fit(vectors), types=(ValueError,),
                            names=["inf", "[11]"])


HUGE_VALUES_CHILD = r"""
import numpy as np
from baselines.faiss_ann.index import IndexSpec, build_index, search
from baselines.sid_tokenizers import RQKMeansTokenizer

vectors = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
huge = vectors.copy()
huge[[3, 7]] = 1e20
index = build_index(vectors, IndexSpec(name="flat", factory="Flat"))
for name, action in [("build_index", lambda: build_index(huge, IndexSpec(name="flat", factory="Flat"))),
                     ("search", lambda: search(index, huge[:10], 5)),
                     ("rq_kmeans_fit", lambda: RQKMeansTokenizer(num_levels=2, codebook_size=4).fit(huge))]:
    try:
        action()
        print(f"{name}: NO ERROR", flush=True)
    except ValueError as error:
        print(f"{name}: ValueError: {str(error)[:60]}", flush=True)
"""


@case("arrays_huge_values_no_sigabrt", "|x| = 1e20 into faiss build / search / RQ-KMeans -> ValueError, never SIGABRT "
      "(subprocess rc != -6)", timeout_s=90)
def huge_values_subprocess(box: Sandbox) -> Outcome:
    """|x| = 1e20 through faiss build, faiss search and RQ-KMeans, in a subprocess (a SIGABRT would be -6)."""
    result = box.run([sys.executable, "-c", HUGE_VALUES_CHILD], timeout=90)
    lines = [line for line in result.stdout.splitlines() if ": " in line]
    problems = []
    if result.returncode != 0:
        problems.append(f"rc={result.returncode}" + (" (SIGABRT)" if result.returncode == -6 else "") +
                        f", stderr: {one_line(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else '', 80)}")
    raised = [line for line in lines if "ValueError" in line]
    if len(raised) != 3:
        problems.append(f"{len(raised)} of 3 operations raised ValueError: {lines}")
    return verdict(problems, f"rc={result.returncode}; build_index, search and RQ-KMeans fit each raised ValueError "
                             f"({one_line(raised[0] if raised else '', 90)})")


def _tiny_mmq():
    from mmq.mmq_tokenizer.config import MMQConfig
    from mmq.mmq_tokenizer.tokenizer import MMQTokenizer

    return MMQTokenizer(MMQConfig(codebook_size=8, code_dim=16, gate_hidden_dim=8, decoder_hidden_dims=(16,),
                                  num_steps=10, batch_size=32, restart_every=10, progress=False))


@case("arrays_modality_shape_mismatch", "text [60, d] with image [59, d] -> ValueError naming both counts", fast=True)
def modality_shape_mismatch(box: Sandbox) -> Outcome:
    rng = np.random.default_rng(0)
    data = {"text": rng.normal(size=(60, 12)).astype(np.float32), "image": rng.normal(size=(59, 10)).astype(np.float32)}
    with single_threaded():
        return expect_error(lambda: _tiny_mmq().fit(data), types=(ValueError,), names=["60", "59"])


@case("arrays_wrong_dim_at_encode", "encode with another dim than fitted (RQ-KMeans, MMQ) -> ValueError naming both "
      "dims", fast=True)
def wrong_dim_at_encode(box: Sandbox) -> Outcome:
    from baselines.sid_tokenizers import RQKMeansTokenizer

    problems, observed = [], []
    rng = np.random.default_rng(0)
    data = {"text": rng.normal(size=(60, 12)).astype(np.float32), "image": rng.normal(size=(60, 10)).astype(np.float32)}
    with single_threaded():
        tokenizer = RQKMeansTokenizer(num_levels=2, codebook_size=4).fit(_vectors(), seed=0)
        mmq = _tiny_mmq().fit(data, seed=0)
    outcome = expect_error(lambda: tokenizer.encode(_vectors(5, 9)), types=(ValueError,), names=["8", "9"])
    observed.append(f"RQ-KMeans: {outcome.observed}")
    if not outcome.ok:
        problems.append(observed[-1])
    wrong = {"text": data["text"], "image": rng.normal(size=(60, 11)).astype(np.float32)}
    outcome = expect_error(lambda: mmq.encode(wrong), types=(ValueError,), names=["image", "10", "11"])
    observed.append(f"MMQ: {outcome.observed}")
    if not outcome.ok:
        problems.append(observed[-1])
    return verdict(problems, "; ".join(observed))


@case("arrays_codes_out_of_range", "decode of a code >= codebook size -> ValueError (no silent wrap)", fast=True)
def sid_codes_out_of_range(box: Sandbox) -> Outcome:
    """decode() of codes outside the codebooks (a hand-edited or foreign SID table)."""
    from baselines.sid_tokenizers import RQKMeansTokenizer

    with single_threaded():
        tokenizer = RQKMeansTokenizer(num_levels=2, codebook_size=4).fit(_vectors(), seed=0)
        codes = tokenizer.encode(_vectors(6))
    codes[2, 1] = 4
    try:
        tokenizer.decode(codes)
    except ValueError as error:
        return Outcome("range" in str(error), describe(error))
    return Outcome(False, "decode accepted code 4 in a codebook of size 4")

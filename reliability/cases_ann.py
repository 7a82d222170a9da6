"""Category ``ann``: bad inputs to the chapter-3 / chapter-6 ANN code (grids, factories, devices, vectors, codes)."""

from __future__ import annotations

import numpy as np

from reliability.checks import expect_error
from reliability.core import Case, Outcome, Sandbox, declare

CATEGORY = "ann"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)


@case("ann_malformed_grid", "a search grid without '=' -> ValueError naming the part", fast=True)
def malformed_grid(box: Sandbox) -> Outcome:
    from baselines.faiss_ann.sweep import IndexFamily

    return expect_error(lambda: IndexFamily("IVF", "IVF{nlist},Flat", "nprobe 1,2"), types=(ValueError,),
                        names=["malformed grid part", "nprobe 1,2"])


@case("ann_parameter_not_of_index", "efSearch on an IVF index -> ValueError naming the family and the setting",
      fast=True)
def parameter_not_of_index(box: Sandbox) -> Outcome:
    from baselines.faiss_ann.benchmark import clustered_vectors
    from baselines.faiss_ann.sweep import IndexFamily, cached_index, exact_neighbours, sweep_family

    x, q = clustered_vectors(2000, 8, 4), clustered_vectors(10, 8, 4, seed=1)
    family = IndexFamily("IVF", "IVF16,Flat", "efSearch=16")
    index, _ = cached_index(x, "fp", family)
    return expect_error(lambda: sweep_family(index, q, exact_neighbours(x, q, 10), family), types=(ValueError,),
                        names=["'IVF'", "efSearch=16"])


@case("ann_unknown_device", "device: cuda in the chapter-3 config -> ValueError listing cpu / gpu / auto", fast=True)
def unknown_device(box: Sandbox) -> Outcome:
    from baselines.faiss_ann.scale import AnnScaleConfig

    return expect_error(lambda: AnnScaleConfig(device="cuda"), types=(ValueError,), names=["'cuda'", "auto"])


@case("ann_nan_vectors_to_fit", "NaN rows in the vectors the synthetic mixture is fitted to -> ValueError naming rows",
      fast=True)
def nan_vectors_to_fit(box: Sandbox) -> Outcome:
    from baselines.faiss_ann.benchmark import clustered_vectors
    from baselines.faiss_ann.corpus import fit_mixture

    x = clustered_vectors(400, 8, 4)
    x[[5, 9]] = np.nan
    return expect_error(lambda: fit_mixture(x, num_components=4, rank=2), types=(ValueError,),
                        names=["NaN", "[5, 9]"])


@case("ann_codes_out_of_range", "semantic IDs beyond the codebook -> ValueError naming the range", fast=True)
def codes_out_of_range(box: Sandbox) -> Outcome:
    from baselines.multiphase.prefix_index import PrefixIndex

    codes = np.array([[0, 1], [2, 7]])
    return expect_error(lambda: PrefixIndex(codes, (4, 4)), types=(ValueError,), names=["out of range", "(4, 4)"])

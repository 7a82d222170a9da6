"""The value check every embedding matrix passes before faiss or torch sees it.

faiss and our float32 distance code compute squared norms; a finite value of magnitude ~1e20 squares to
inf in float32 and aborts the interpreter inside faiss (SIGABRT) instead of raising. So rows must be
finite AND below :data:`MAX_ABS_VALUE`, chosen so that a squared distance over 4,096 dimensions stays
finite in float32 (4096 * (2e15)^2 = 1.6e34 < 3.4e38).
"""

from __future__ import annotations

import numpy as np

MAX_ABS_VALUE = 1e15


def check_finite_rows(array: np.ndarray, *, name: str, max_abs: float = MAX_ABS_VALUE) -> None:
    """Raise ValueError naming the rows of a 2-D ``array`` that hold NaN/inf or values >= ``max_abs``."""
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} has {bad.size} row(s) with NaN or inf values (first rows: {bad[:5].tolist()})")
    huge = (np.abs(array) >= max_abs).any(axis=1)
    if huge.any():
        bad = np.flatnonzero(huge)
        raise ValueError(f"{name} has {bad.size} row(s) with values of magnitude >= {max_abs:g} (first rows: "
                         f"{bad[:5].tolist()}); such values overflow float32 distances in faiss: rescale the input")

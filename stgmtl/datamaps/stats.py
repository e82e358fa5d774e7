"""The one formula from recorded sums to data-map statistics (numpy, float64).

Per (task, sample), from ``n`` observations of the true-label probability ``p``:

* confidence  = ``S1 / n`` with ``S1 = sum p``;
* variability = ``sqrt(max(S2 - S1 * confidence, 0) / max(n - ddof, 1))`` with ``S2 = sum p**2``
  (``ddof=0`` as in Dataset Cartography); ``0`` for one observation, NaN for none;
* correctness = right predictions / ``n``.

The recorder (:mod:`stgmtl.record`) and the Dataset Cartography importer
(:mod:`stgmtl.datamaps.cartography`) both call :func:`moments_to_stats`, so their variabilities
agree to rounding. The sums form is exact-merge friendly: sums over processes add.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moments_to_stats"]


def moments_to_stats(
    s1: np.ndarray, s2: np.ndarray, right: np.ndarray, n: np.ndarray, ddof: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, variability and correctness from sums (all arrays of one shape).

    Parameters
    ----------
    s1, s2 : np.ndarray
        Sums of ``p`` and ``p**2`` (float64).
    right : np.ndarray
        Number of right predictions.
    n : np.ndarray
        Number of observations.
    ddof : {0, 1}
        Delta degrees of freedom of the variability.

    Returns
    -------
    confidence, variability, correctness : np.ndarray
        float64, NaN where ``n == 0``.
    """
    nf = np.asarray(n, dtype=np.float64)
    s1 = np.asarray(s1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = s1 / nf
        m2 = np.maximum(np.asarray(s2, dtype=np.float64) - s1 * conf, 0.0)
        var = np.sqrt(m2 / np.maximum(nf - ddof, 1.0))
        corr = np.asarray(right, dtype=np.float64) / nf
    var[nf <= 1] = 0.0
    var[nf == 0] = np.nan
    return conf, var, corr

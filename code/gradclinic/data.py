"""Training data for the bump layer, and screening of targets the formula cannot produce."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ScreenReport:
    """What screen() kept and dropped."""

    kept: int
    nonfinite: int
    huge: int

    @property
    def dropped(self) -> int:
        """Rows removed for any reason."""
        return self.nonfinite + self.huge


def bump_formula(x: np.ndarray, sigma: float) -> np.ndarray:
    """The unguarded formula in float64: may hold inf or huge values when sigma > 1 and |x| > 1."""
    x = np.asarray(x, dtype=np.float64)
    # Overflow and 0/0 are the point of this function for chapter 4; screen() reports them.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        inside = np.abs(x) < sigma
        return np.where(inside, np.exp(-sigma / (sigma - x**2)), 0.0)


def bump_formula_dsigma(x: np.ndarray, sigma: float) -> np.ndarray:
    """The formula's derivative with respect to sigma, f * x^2 / (sigma - x^2)^2, in float64."""
    x = np.asarray(x, dtype=np.float64)
    # Same support as bump_formula; inf/NaN near x^2 = sigma are what the figures show.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        inside = np.abs(x) < sigma
        gap = sigma - x**2
        return np.where(inside, np.exp(-sigma / gap) * x**2 / gap**2, 0.0)


def bump_stable_reference(x: Any, sigma: Any) -> dict[str, np.ndarray]:
    """f, df/dx and df/dsigma of the stable bump in float64: 0 off |x| < sigma and x^2 < sigma."""
    x = np.asarray(x, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    inside = (np.abs(x) < sigma) & (x**2 < sigma)
    gap = np.where(inside, sigma - x**2, 1.0)
    f = np.where(inside, np.exp(-sigma / gap), 0.0)
    return {
        "values": f,
        "grad_x": np.where(inside, -2 * sigma * x * f / gap**2, 0.0),
        "grad_sigma": np.where(inside, f * x**2 / gap**2, 0.0),
    }


def make_bump_data(
    sigma: float,
    n: int,
    x_range: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n points x uniform in x_range and their targets f(x; sigma), as float32 (n, 1) arrays."""
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, int | float)
        or not math.isfinite(sigma)
    ):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma < 0:
        raise ValueError(
            f"sigma must be >= 0 (the bump's threshold), got {sigma!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if (
        not isinstance(x_range, tuple | list)
        or len(x_range) != 2
        or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in x_range
        )
        or not x_range[0] < x_range[1]
    ):
        raise ValueError(
            f"x_range must be two finite numbers (low, high) with low < high, got {x_range!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(x_range[0], x_range[1], size=(n, 1))
    y = bump_formula(x, float(sigma))
    with np.errstate(over="ignore"):
        return x.astype(np.float32), y.astype(np.float32)


def screen(
    x: np.ndarray, y: np.ndarray, limit: float = 1.0
) -> tuple[np.ndarray, np.ndarray, ScreenReport]:
    """Drop rows whose target is NaN/inf or above limit (default 1: between exp(-1) and band values).

    A true bump value is at most exp(-1); where sqrt(sigma) < |x| < sigma the formula's exponent
    is positive, so its value is above 1. Any limit in [exp(-1), 1] separates the two (a Python
    float limit is compared in y's dtype). Above sigma = 1.7e7 the band values nearest
    |x| = sigma round to exactly 1 in float32 and are kept.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of rows, got {x.shape[0]} and {y.shape[0]}"
        )
    if not (
        isinstance(limit, int | float) and limit > 0 and math.isfinite(limit)
    ):
        raise ValueError(f"limit must be a finite number > 0, got {limit!r}")
    rows = y.reshape(y.shape[0], -1)
    finite = np.isfinite(rows).all(axis=1)
    with np.errstate(invalid="ignore"):
        huge = finite & (np.abs(rows) > limit).any(axis=1)
    keep = finite & ~huge
    report = ScreenReport(
        kept=int(keep.sum()),
        nonfinite=int((~finite).sum()),
        huge=int(huge.sum()),
    )
    return x[keep], y[keep], report

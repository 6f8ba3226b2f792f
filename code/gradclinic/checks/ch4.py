"""Self-checks for chapter 4's exercises: inputs with |x| > 1, slow large sigma, screening.

Each exercise's judge compares the evidence of its probe (gradclinic.probes.ch4, which runs the
student's answer on inputs chosen here, none of them shown in the chapter) with a reference
computed here in float64, never calling student code.
"""

from __future__ import annotations

import math

import numpy as np

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    Inputs,
    exercise,
)
from gradclinic.data import bump_formula_dsigma, bump_stable_reference
from gradclinic.probes.ch4 import (
    _COLUMN_X,
    _STRESS_SIGMA,
    _TEACHER,
    _screen_cases,
    _stable_x,
    _teacher,
)

__all__ = ["ex4_1", "ex4_2", "ex4_3", "ex4_4", "ex4_5"]

# ln of the largest float32: exp of anything larger is inf in float32.
FLOAT32_LOG_MAX = math.log(float(np.finfo(np.float32).max))


# 1.004 lies between 1 and 1 + 1/88.72, where sigma itself caps the band; 1.0 is the tie.
_OVERFLOW_SIGMAS = (0.6, 1.0, 1.004, 1.3, 2.2, 7.5, 40.0)


def _inputs_4_1(rng: np.random.Generator | None) -> Inputs:
    # The grader's: the tie 1.0, and one sigma drawn in each region of the self-check's.
    if rng is None:
        return {"sigmas": np.array(_OVERFLOW_SIGMAS)}
    regions = ((0.05, 0.99), (1.0005, 1.011), (1.02, 1.8), (1.8, 4.0), (4.0, 15.0), (15.0, 60.0))
    drawn = [round(float(rng.uniform(low, high)), 4) for low, high in regions]
    return {"sigmas": np.array([drawn[0], 1.0, *drawn[1:]])}


def _overflow_reference(sigma: float) -> tuple[float, float] | None:
    if sigma <= 1:
        return None
    return math.sqrt(sigma), min(sigma, math.sqrt(sigma * (1 + 1 / FLOAT32_LOG_MAX)))


@exercise("4.1", inputs=_inputs_4_1)
def ex4_1(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 4.1: the positive x where the double-where layer returns inf in float32."""
    sigmas = tuple(np.asarray(inputs["sigmas"], dtype=np.float64).ravel().tolist())
    is_none = np.asarray(evidence["is_none"], dtype=bool).reshape(len(sigmas))
    low = np.asarray(evidence["low"], dtype=np.float64).reshape(is_none.shape)
    high = np.asarray(evidence["high"], dtype=np.float64).reshape(is_none.shape)
    for i, sigma in enumerate(sigmas):
        want = _overflow_reference(sigma)
        if want is None:
            if not is_none[i]:
                raise CheckFailed(
                    f"sigma={sigma}: got ({low[i]:.6g}, {high[i]:.6g}), but the layer returns "
                    "no inf for any x at this sigma"
                )
            continue
        if is_none[i]:
            raise CheckFailed(f"sigma={sigma}: got None, but the layer returns inf for some x")
        for end, got, ref in (("lower", low[i], want[0]), ("upper", high[i], want[1])):
            if not (math.isfinite(got) and math.isclose(got, ref, rel_tol=1e-5)):
                raise CheckFailed(
                    f"sigma={sigma}: the {end} end {got:.6g} is not where the float32 output "
                    "changes between finite and inf (tolerance 1e-5 relative)"
                )
    # The newlines keep each printed line within 80 characters.
    return f"the inf band is right for sigma in\n{sigmas}."


_STABLE_SIGMAS = (0.0, 0.37, 1.0, 2.6, 6.1)
_COLUMN_SIGMAS = (0.0, 0.55, 1.7, 4.2)


def _inputs_4_2(rng: np.random.Generator | None) -> Inputs:
    # The grader's: sigma 0 and 1 (the edges of the band's existence), the rest drawn.
    if rng is None:
        sigmas, column = _STABLE_SIGMAS, _COLUMN_SIGMAS
    else:

        def draw(low: float, high: float) -> float:
            return round(float(rng.uniform(low, high)), 2)

        sigmas = (0.0, draw(0.05, 0.95), 1.0, draw(1.05, 4.0), draw(4.0, 7.0))
        column = (0.0, draw(0.1, 1.0), draw(1.1, 3.0), draw(3.0, 6.0))
    return {"sigmas": np.array(sigmas), "column_sigmas": np.array(column)}


def _sum_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # The gradient of a sum with respect to a broadcast input adds over the broadcast axes.
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and array.shape[i] != 1)
    return array.sum(axis=axes, keepdims=True).reshape(shape)


def _compare_bump(
    evidence: Evidence, suffix: str, x: np.ndarray, sigma: np.ndarray, where: str
) -> None:
    want = bump_stable_reference(x, sigma)
    shape = np.broadcast_shapes(x.shape, sigma.shape)
    dtype = evidence[f"dtype_{suffix}"]
    if dtype != "float32":
        raise CheckFailed(f"{where}: expected a float32 result for float32 inputs, got {dtype}")
    values = np.asarray(evidence[f"values_{suffix}"], dtype=np.float64)
    if values.shape != shape:
        raise CheckFailed(f"{where}: expected a result of shape {shape}, got {values.shape}")
    xs, ss = np.broadcast_to(x, shape), np.broadcast_to(sigma, shape)
    bad = np.flatnonzero(~np.isclose(values, want["values"], rtol=1e-4, atol=1e-6))
    if bad.size:
        i = bad[0]
        raise CheckFailed(
            f"x={xs.flat[i]:.6g}, sigma={ss.flat[i]:.4g}: expected f = "
            f"{want['values'].flat[i]:.4g}, got {values.flat[i]:.4g}"
        )
    grad_x, grad_sigma = evidence[f"grad_x_{suffix}"], evidence[f"grad_sigma_{suffix}"]
    if grad_sigma is None or grad_x is None:
        raise CheckFailed(f"{where}: expected gradients for x and sigma, got None")
    grad_x = np.asarray(grad_x, dtype=np.float64).reshape(x.shape)
    want_gx = _sum_to(np.broadcast_to(want["grad_x"], shape), x.shape)
    if not np.all(np.isfinite(grad_x)):
        i = np.flatnonzero(~np.isfinite(grad_x))[0]
        raise CheckFailed(
            f"{where}, x={x.flat[i]:.6g}: expected a finite df/dx, got {grad_x.flat[i]}"
        )
    bad = np.flatnonzero(~np.isclose(grad_x, want_gx, rtol=1e-3, atol=1e-5))
    if bad.size:
        i = bad[0]
        raise CheckFailed(
            f"{where}, x={x.flat[i]:.6g}: expected df/dx = {want_gx.flat[i]:.4g}, "
            f"got {grad_x.flat[i]:.4g}"
        )
    grad_sigma = np.asarray(grad_sigma, dtype=np.float64).reshape(sigma.shape)
    want_gs = _sum_to(np.broadcast_to(want["grad_sigma"], shape), sigma.shape)
    for i in range(sigma.size):
        got, ref = float(grad_sigma.flat[i]), float(want_gs.flat[i])
        label = where if sigma.size == 1 else f"sigma={sigma.flat[i]:.4g} in the column"
        if not math.isfinite(got):
            raise CheckFailed(f"{label}: expected a finite df/dsigma, got {got}")
        if not math.isclose(got, ref, rel_tol=1e-3, abs_tol=1e-5):
            raise CheckFailed(f"{label}: expected the sum of df/dsigma {ref:.4f}, got {got:.4f}")


@exercise("4.2", inputs=_inputs_4_2)
def ex4_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 4.2: a bump whose values and gradients are right and finite for every x, sigma >= 0."""
    stable = tuple(np.asarray(inputs["sigmas"], dtype=np.float64).ravel().tolist())
    columns = tuple(np.asarray(inputs["column_sigmas"], dtype=np.float64).ravel().tolist())
    for i, sigma in enumerate(stable):
        x = _stable_x(sigma).astype(np.float64)
        sigma_used = np.array([np.float32(sigma)], dtype=np.float64)
        _compare_bump(evidence, str(i), x, sigma_used, f"sigma={sigma}, x in [-7.3, 7.3]")
    if "column_error" in evidence:
        raise CheckFailed(f"sigma as a column {columns}: {evidence['column_error']}")
    x_row = np.array([_COLUMN_X], dtype=np.float32).astype(np.float64)
    column = np.array(columns, dtype=np.float32).astype(np.float64).reshape(-1, 1)
    _compare_bump(evidence, "column", x_row, column, f"sigma as a column {columns}")
    return (
        f"values and gradients right for x in [-7.3, 7.3]\n"
        f"(edges, band, tiny x), sigma in {stable},\n"
        f"and for a sigma column."
    )


@exercise("4.3")
def ex4_3(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 4.3: a squashing layer in front of the double-where layer, recovering a teacher."""
    # tanh rounds to exactly +-1 in float32 for large inputs; |h| = 1 is still outside the band.
    if not float(evidence["h_max"]) <= 1:
        raise CheckFailed(
            f"x={float(evidence['h_max_at']):.1f}: expected the bump layer's input in [-1, 1], "
            f"got {float(evidence['h_max']):.4g}"
        )
    finite = np.asarray(evidence["grads_finite"], dtype=bool).reshape(-1)
    names = np.asarray(evidence["variables"]).reshape(finite.shape)
    if not finite.all():
        raise CheckFailed(
            f"x in [-60, 60], sigma={_STRESS_SIGMA}: expected a finite gradient for "
            f"{names[np.flatnonzero(~finite)[0]]}, got None or NaN/inf"
        )
    if int(evidence["nonfinite_steps"]) != 0:
        raise CheckFailed(
            f"training on the check's teacher: {int(evidence['nonfinite_steps'])} steps had a "
            "NaN/inf loss or gradient, expected none"
        )
    grid = np.linspace(-6, 6, 121, dtype=np.float32).reshape(-1).astype(np.float64)
    predictions = np.asarray(evidence["predictions"], dtype=np.float64).reshape(grid.shape)
    error = float(np.max(np.abs(predictions - _teacher(grid))))
    sigma = float(evidence["sigma"])
    if not (error < 1e-3 and abs(sigma - _TEACHER[2]) < 0.01 * _TEACHER[2]):
        raise CheckFailed(
            "after fit_model(epochs=25) on 600 points of a teacher you have not seen, the "
            f"model is off by up to {error:.2g} on x in [-6, 6] (sigma learned: {sigma:.3g}); "
            "expected under 1e-3 and sigma within 1 %: this model cannot represent the teacher "
            "or does not learn it"
        )
    return (
        "the bump layer sees only [-1, 1] for x in [-60, 60],\n"
        "every gradient is finite, and the model recovers a teacher it has not seen."
    )


_SGD_CASES = ((1.0, 3.0), (1.6, 40.0), (4.5, 0.7), (12.0, 5000.0))
_SGD_SEED = 23


def _inputs_4_4(rng: np.random.Generator | None) -> Inputs:
    # The self-check's x from its own seed; the grader's drawn from the run's. Both keep 0 and
    # the data's ends.
    draw = np.random.default_rng(_SGD_SEED) if rng is None else rng
    x = np.concatenate([draw.uniform(-1, 1, 37), [0.0, 0.999, -0.999]])
    if rng is not None:
        x = rng.permutation(x)
    return {"x": x.reshape(5, 8), "cases": np.array(_SGD_CASES)}


def _sgd_reference(x: np.ndarray, sigma_true: float, learning_rate: float) -> float:
    # Near the target f(x; sigma) - f(x; sigma*) = df/dsigma * (sigma - sigma*), so the MSE's
    # slope is 2 mean(df/dsigma^2) (sigma - sigma*), and one step multiplies the error by this.
    curvature = 2 * np.mean(bump_formula_dsigma(x, sigma_true) ** 2)
    return float(1 - learning_rate * curvature)


@exercise("4.4", inputs=_inputs_4_4)
def ex4_4(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 4.4: the factor by which one full-batch SGD step shrinks sigma's error."""
    cases = tuple(tuple(case) for case in np.asarray(inputs["cases"], np.float64).tolist())
    factors = np.asarray(evidence["factors"], dtype=np.float64).reshape(len(cases))
    x = np.asarray(inputs["x"], dtype=np.float64)
    for (sigma_true, rate), got in zip(cases, factors, strict=True):
        want = _sgd_reference(x, sigma_true, rate)
        where = f"x (40 points in (-1, 1)), sigma_true={sigma_true}, learning_rate={rate}"
        if not math.isfinite(got):
            raise CheckFailed(f"{where}: expected a finite factor, got {got}")
        if got > 1:
            raise CheckFailed(
                f"{where}: your factor {got:.6g} is above 1, so a step would move sigma away "
                "from the target"
            )
        # Compare 1 - factor: the step's own size, which is what the learning rate scales.
        if not math.isclose(1 - got, 1 - want, rel_tol=1e-3):
            raise CheckFailed(
                f"{where}: your factor {got:.6g} is off (1 - factor must be right to 0.1 %)"
            )
    return f"the first-order SGD factor is right for\n(sigma_true, learning_rate) in\n{cases}."


_SCREEN_CASES = (
    (0.5, (-3.0, 3.0)),
    (1.0, (-5.0, 5.0)),
    (2.0, (-1.2, 1.2)),
    (2.0, (-1.2, 1.5)),
    (3.0, (0.0, 1.7)),
    (4.0, (-3.0, -2.5)),
    (9.0, (3.5, 8.0)),
    (9.0, (9.5, 12.0)),
    (6.0, (-7.0, 7.0)),
    (2.5, (1.0, 1.8)),
    (1.2, (-1.1, 0.5)),
    (5.0, (-10.0, -1.0)),
)


def _inputs_4_5(rng: np.random.Generator | None) -> Inputs:
    # The grader's: sigma 0.5 and 1 (no band) as above, then sigma > 1 with ranges drawn
    # around the band, on either side of 0, partly or wholly inside or outside it.
    cases = list(_SCREEN_CASES)
    if rng is not None:
        cases = cases[:2]
        while len(cases) < len(_SCREEN_CASES):
            sigma = round(float(rng.uniform(1.1, 9.5)), 2)
            low, high = sorted(np.round(rng.uniform(-sigma - 2, sigma + 2, 2), 2).tolist())
            if high - low >= 0.1:
                cases.append((sigma, (low, high)))
    return {"cases": np.array([(sigma, low, high) for sigma, (low, high) in cases])}


def _dropped_reference(sigma: float, x_range: tuple[float, float]) -> float:
    # Uniform x: the share of x_range inside the band sqrt(sigma) < |x| < sigma, both signs.
    low, high = x_range
    if sigma <= 1:
        return 0.0
    root = math.sqrt(sigma)
    inside = sum(max(0.0, min(high, b) - max(low, a)) for a, b in ((-sigma, -root), (root, sigma)))
    return inside / (high - low)


@exercise("4.5", inputs=_inputs_4_5)
def ex4_5(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 4.5: the expected share of make_bump_data's rows that screen drops."""
    cases = _screen_cases(inputs)
    fractions = np.asarray(evidence["fractions"], dtype=np.float64).reshape(len(cases))
    for (sigma, x_range), got in zip(cases, fractions, strict=True):
        want = _dropped_reference(sigma, x_range)
        if not (math.isfinite(got) and abs(got - want) <= 1e-6):
            raise CheckFailed(
                f"sigma={sigma}, x_range={x_range}: got {got:.6g}, which is not the expected "
                "share of dropped rows (exact, to 1e-6)"
            )
    return f"right on {len(cases)} (sigma, x_range) cases,\nedges and both signs included."

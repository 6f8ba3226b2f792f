"""gradclinic.plots.bump and .training: what each figure draws, the animation's frames, size, labels."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from gradclinic.data import bump_formula, bump_formula_dsigma
from gradclinic.plots import animate_bump, plot_bump, plot_sigma_per_epoch, plot_sweep
from gradclinic.plots.bump import animation_alt_text, band_edges, band_limit
from gradclinic.plots.training import plot_loss_and_sigma
from gradclinic.train import TrainResult
from matplotlib.animation import HTMLWriter


def vertical_lines(ax):
    return sorted(
        line.get_xdata()[0] for line in ax.lines if np.ptp(np.asarray(line.get_xdata())) == 0
    )


def test_plot_bump_draws_f_dfdsigma_and_the_four_vertical_lines():
    ax = plot_bump(2.0)
    np.testing.assert_allclose(vertical_lines(ax), [-2.0, -np.sqrt(2), np.sqrt(2), 2.0])
    f_line, dfds_line = ax.lines[:2]
    x = f_line.get_xdata()
    np.testing.assert_allclose(f_line.get_ydata(), bump_formula(x, 2.0))
    np.testing.assert_allclose(dfds_line.get_ydata(), bump_formula_dsigma(x, 2.0))


def test_plot_bump_reuses_given_axes_and_returns_them():
    fig, ax = plt.subplots()
    assert plot_bump(0.5, ax=ax, legend=False) is ax
    assert ax.get_legend() is None and len(fig.axes) == 1


def test_show_unselected_draws_the_formula_only_outside_the_bump():
    ax = plot_bump(0.5, show_unselected=True)
    unselected = next(line for line in ax.lines if line.get_label().startswith("formula"))
    x, y = unselected.get_xdata(), unselected.get_ydata()
    assert np.all(np.isnan(y[np.abs(x) < 0.5]))
    outside = np.abs(x) > 0.75
    np.testing.assert_allclose(y[outside], np.exp(-0.5 / (0.5 - x[outside] ** 2)))


def test_plot_bump_rejects_bad_sigma_and_range():
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        plot_bump(-1.0)
    with pytest.raises(ValueError, match="x_range must be"):
        plot_bump(1.0, x_range=(1.0, -1.0))


def test_animation_has_the_requested_frames_and_stays_small():
    html = animate_bump(sigma_max=5.0, frames=26).data
    assert html.count("data:image/png;base64") == 26
    # Chapter 3's whole page must stay under 2 MB, and it holds more than the animation.
    assert len(html.encode()) < 1_500_000


def test_animation_frames_are_large_enough_to_read(monkeypatch):
    seen = {}
    original = HTMLWriter.grab_frame

    def spy(self, *args, **kwargs):
        fig = self.fig
        seen["pixels"] = fig.get_size_inches() * fig.dpi
        seen["ticks"] = min(t.get_fontsize() for t in fig.axes[0].get_xticklabels())
        seen["legend"] = min(t.get_fontsize() for t in fig.axes[0].get_legend().get_texts())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HTMLWriter, "grab_frame", spy)
    animate_bump(frames=2)
    # At 100 dpi a point is 1.4 px: 10 pt text is about 14 px high on the page.
    assert seen["pixels"][0] >= 600 and seen["pixels"][1] >= 300
    assert seen["ticks"] >= 10 and seen["legend"] >= 10


def test_animation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="frames must be an int from 2 to 200"):
        animate_bump(frames=1)
    with pytest.raises(ValueError, match="sigma_max must be a finite number > 0"):
        animate_bump(sigma_max=0.0)


def make_result(sigmas):
    sigmas = np.asarray(sigmas, dtype=float)
    return TrainResult(sigmas, np.zeros(len(sigmas) - 1), 0, 0, None)


def test_sigma_per_epoch_plots_each_run_and_marks_where_nan_began():
    results = {
        "naive": make_result([0.1, 0.4, np.nan]),
        "double_where": make_result([0.1, 0.4, 0.5]),
    }
    ax = plot_sigma_per_epoch(results, true_sigma=0.5)
    labels = [line.get_label() for line in ax.lines]
    assert "naive: NaN after epoch 1" in labels and "double_where" in labels
    cross = ax.lines[labels.index("naive: NaN after epoch 1")]
    assert (cross.get_xdata()[0], cross.get_ydata()[0]) == (1, 0.4)
    with pytest.raises(ValueError, match="results must map at least one label"):
        plot_sigma_per_epoch({}, 0.5)


def test_sigma_per_epoch_ticks_only_whole_epochs():
    ax = plot_sigma_per_epoch({"double_where": make_result(np.linspace(0.1, 0.5, 21))}, 0.5)
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert len(ticks) >= 3
    assert all(float(t).is_integer() for t in ticks), ticks


def test_sweep_plots_finite_results_and_puts_nan_on_the_bottom_edge():
    ax = plot_sweep([0.1, 1.0, 5.0], {"naive": [np.nan, 1.0, 4.9], "double_where": [0.1, 1.0, 5.0]})
    labels = [line.get_label() for line in ax.lines]
    naive = ax.lines[labels.index("naive")]
    np.testing.assert_allclose(naive.get_xdata(), [1.0, 5.0])
    failed = ax.lines[labels.index("naive: NaN or 0")]
    np.testing.assert_allclose(failed.get_xdata(), [0.1])
    assert failed.get_ydata()[0] < 0.1
    with pytest.raises(ValueError, match=r"learned\['naive'\] must have 3 values"):
        plot_sweep([0.1, 1.0, 5.0], {"naive": [0.1]})
    with pytest.raises(ValueError, match="true_sigmas must all be > 0"):
        plot_sweep([0.0, 1.0], {"naive": [0.1, 1.0]})


def test_sweep_draws_the_start_as_a_horizontal_line():
    ax = plot_sweep([0.2, 1.0, 5.0], {"double_where": [0.2, 1.0, 4.9]}, start=0.3)
    start = next(line for line in ax.lines if line.get_label().startswith("start"))
    np.testing.assert_allclose(start.get_ydata(), [0.3, 0.3])
    with pytest.raises(ValueError, match="start must lie between"):
        plot_sweep([0.2, 1.0], {"naive": [0.2, 1.0]}, start=0.01)


def test_band_shades_sqrt_sigma_to_sigma_and_marks_the_limit_of_f():
    ax = plot_bump(2.0, band=True, yscale="symlog", ylim=(-0.2, 1e4))
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)
    np.testing.assert_allclose(spans, [(-2.0, -np.sqrt(2)), (np.sqrt(2), 2.0)])
    edge = next(line for line in ax.lines if line.get_label().startswith(r"$f \to"))
    np.testing.assert_allclose(edge.get_xdata(), [-2.0, 2.0])
    # The marker sits where the curve ends: f just inside |x| = sigma.
    np.testing.assert_allclose(edge.get_ydata(), bump_formula([2.0 - 1e-9], 2.0)[0], rtol=1e-6)
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[1] == 1e4


def test_band_limit_is_e_at_2_and_1_28_at_5():
    assert round(band_limit(2.0), 2) == 2.72 and round(band_limit(5.0), 2) == 1.28
    assert band_edges(0.5) is None and band_edges(1.0) is None
    with pytest.raises(ValueError, match="sigma must be > 1"):
        band_limit(1.0)


def test_no_band_is_drawn_for_sigma_up_to_one():
    ax = plot_bump(0.5, band=True)
    assert not ax.patches and not any(line.get_label().startswith(r"$f \to") for line in ax.lines)
    with pytest.raises(ValueError, match="yscale must be one of"):
        plot_bump(0.5, yscale="log")


def test_animation_image_has_alt_text_and_the_slider_a_label():
    html = animate_bump(sigma_max=5.0, frames=3).data
    image = re.search(r"<img [^>]*>", html).group(0)
    alt = re.search(r'alt="([^"]+)"', image).group(1)
    assert "sigma rising from 0 to 5" in alt and "1.28" in alt and "3 frames" in alt
    slider = re.search(r'<input [^>]*type="range"[^>]*>', html, re.S).group(0)
    assert 'aria-label="' in slider
    # Every button keeps an accessible name (matplotlib writes aria-label on each).
    buttons = re.findall(r"<button [^>]*>", html)
    assert buttons and all("aria-label=" in b for b in buttons)
    assert animation_alt_text(0.5, 4).count("exp(1/") == 0


def test_plot_loss_and_sigma_shades_the_steps_where_sigma_is_nan():
    sigma = [0.1, 0.2, np.nan, np.nan]
    fig = plot_loss_and_sigma([0.05, 0.04, 0.047, 0.047], sigma, steps_per_epoch=2)
    top, bottom = fig.axes
    labels = [p.get_label() for p in bottom.patches]
    assert r"$\sigma$ = NaN from step 3" in labels
    shaded = bottom.patches[0]
    assert shaded.get_x() == 2.5
    np.testing.assert_allclose(top.lines[0].get_ydata(), [0.05, 0.04, 0.047, 0.047])
    with pytest.raises(ValueError, match="same non-zero length"):
        plot_loss_and_sigma([0.1], [0.1, 0.2])
    with pytest.raises(ValueError, match="steps_per_epoch must be"):
        plot_loss_and_sigma([0.1], [0.1], steps_per_epoch=0)

"""gradclinic.plots.stability: what chapter 4's figures draw, and the inputs they refuse."""

import numpy as np
import pytest
from gradclinic.plots import (
    plot_epochs_vs_sigma,
    plot_loss_slope,
    plot_sigma_trajectories,
    plot_unsafe_band,
)


def test_plot_loss_slope_draws_both_slopes_and_a_line_through_the_last_point():
    sigmas = [2.0, 5.0, 10.0]
    slopes = [-1e-3, -3e-5, -2e-6]
    ax = plot_loss_slope(sigmas, slopes, slopes)
    differences, tape, reference = ax.lines
    np.testing.assert_allclose(tape.get_ydata(), np.abs(slopes))
    np.testing.assert_allclose(differences.get_ydata(), np.abs(slopes))
    # The reference line has slope -4 on log-log axes and meets the last point.
    ref = np.asarray(reference.get_ydata())
    np.testing.assert_allclose(ref[-1], 2e-6)
    np.testing.assert_allclose(ref[0] / ref[-1], (10.0 / 2.0) ** 4)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "5", "10"]


def test_plot_loss_slope_refuses_mismatched_input():
    with pytest.raises(ValueError, match="one slope per sigma"):
        plot_loss_slope([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="sigmas must be at least two numbers > 0"):
        plot_loss_slope([0.0, 2.0], [1.0, 2.0], [1.0, 2.0])


def test_plot_sigma_trajectories_draws_each_run_and_both_budgets():
    runs = {"a": [0.1, 0.4, 0.7], "b": [0.1, 0.2, 0.5]}
    ax = plot_sigma_trajectories(runs, 10.0, 0.32)
    labels = [line.get_label() for line in ax.lines]
    assert labels[:2] == ["a", "b"]
    linear, geometric = ax.lines[2], ax.lines[3]
    np.testing.assert_allclose(linear.get_ydata()[-1], 0.1 + 0.32 * 2)
    np.testing.assert_allclose(geometric.get_ydata()[-1], 0.1 * np.exp(0.32 * 2))
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="budget_per_epoch must be > 0"):
        plot_sigma_trajectories(runs, 10.0, 0.0)
    with pytest.raises(ValueError, match="trajectories must map"):
        plot_sigma_trajectories({}, 10.0, 0.32)


def test_plot_epochs_vs_sigma_draws_grouped_bars_unreached_ones_hatched_at_the_cap():
    ax = plot_epochs_vs_sigma({"a": [3, None], "b": [5, 7]}, [0.5, 10.0], 30, legend=False)
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [3, 30, 5, 7]
    assert [bar.get_hatch() for bar in ax.patches] == [None, "//", None, None]
    # One group per sigma: each setup's bars sit side by side around the group's tick.
    centres = [bar.get_x() + bar.get_width() / 2 for bar in ax.patches]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 0.2, 1.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "10"]
    assert ax.get_legend() is None
    labels = plot_epochs_vs_sigma({"a": [3, None]}, [0.5, 10.0], 30).get_legend().get_texts()
    assert [t.get_text() for t in labels] == ["cap: not reached in 30", "a"]
    with pytest.raises(ValueError, match="one entry per sigma"):
        plot_epochs_vs_sigma({"run": [3]}, [0.5, 10.0], 30)


def test_chapter_4_figures_use_text_of_at_least_11_points():
    ax = plot_epochs_vs_sigma({"a": [3, 4]}, [0.5, 10.0], 30)
    texts = [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_legend().get_texts()]
    assert min(t.get_fontsize() for t in texts) >= 11
    ax = plot_unsafe_band(3.0)
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 11


def test_plot_unsafe_band_shades_both_sides_and_refuses_sigma_without_a_band():
    ax = plot_unsafe_band(3.0)
    starts = sorted(patch.get_x() for patch in ax.patches)
    np.testing.assert_allclose(starts, [-3.0, np.sqrt(3.0)])
    with pytest.raises(ValueError, match="sigma must be a finite number > 1"):
        plot_unsafe_band(1.0)

"""gradclinic.plots.backward: the reverse-mode figure holds the values it claims to show."""

import math

import matplotlib.pyplot as plt
import pytest
from gradclinic.plots.backward import FONT_SIZE, draw_where_backward, where_backward


def texts(fig):
    return [t.get_text() for t in fig.findobj(plt.Text) if t.get_text()]


def test_unselected_branch_meets_zero_times_inf():
    run = where_backward(0.709, 0.5)
    assert not run.selected and run.out == 0.0
    assert math.isinf(run.branch) and run.branch_bar == 0.0
    assert math.isnan(run.exponent_bar) and math.isnan(run.sigma_bar)


def test_selected_branch_gets_the_bump_derivative():
    run = where_backward(0.3, 0.5)
    assert run.selected and run.branch_bar == 1.0
    # df/dsigma = f * x^2 / (sigma - x^2)^2 at sigma = 0.5, x = 0.3.
    f = math.exp(-0.5 / (0.5 - 0.09))
    assert run.sigma_bar == pytest.approx(f * 0.09 / 0.41**2, rel=1e-5)


def test_figure_shows_the_nan_the_inf_and_the_zero_it_claims():
    fig = draw_where_backward()
    shown = texts(fig)
    assert r"$\bar{e}$ = 0 $\times$ inf = NaN" in shown
    assert r"$\bar{\sigma}$ = NaN" in shown and r"$\bar{b}$ = 0" in shown
    assert "b = inf" in shown
    assert "out = 0" in shown
    # The selected row: finite all the way back to sigma.
    assert r"$\bar{\sigma}$ = 0.1581" in shown
    assert r"$\bar{e}$ = 1 $\times$ 0.2954 = 0.2954" in shown
    plt.close(fig)


def test_figure_is_page_wide_with_readable_text():
    fig = draw_where_backward()
    assert fig.get_size_inches()[0] == pytest.approx(8.0)
    sizes = [t.get_fontsize() for t in fig.findobj(plt.Text) if t.get_text()]
    assert sizes and min(sizes) >= FONT_SIZE >= 11
    plt.close(fig)


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        draw_where_backward(sigma=0.0)
    with pytest.raises(ValueError, match="x must be a finite number"):
        draw_where_backward(xs=(float("nan"),))
    with pytest.raises(ValueError, match="xs must hold at least one number"):
        draw_where_backward(xs=())

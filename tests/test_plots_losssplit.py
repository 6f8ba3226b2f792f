"""gradclinic.plots.losssplit: chapter 6's figures are readable at the page's width and draw what they say."""

import matplotlib
import pytest

matplotlib.use("Agg")

from gradclinic import plots

SHARES = {
    "loss1": {
        "joint": {"embedding_matrix": 0.2, "output1": 0.3, "output2": None},
        "var_list": {"embedding_matrix": None, "output1": 0.3, "output2": None},
        "stop_gradient": {"embedding_matrix": 0.2, "output1": 0.3, "output2": None},
    },
    "loss2": {
        "joint": {"embedding_matrix": 0.7, "output1": 0.8, "output2": 0.4},
        "var_list": {"embedding_matrix": None, "output1": None, "output2": 0.4},
        "stop_gradient": {"embedding_matrix": None, "output1": None, "output2": 0.4},
    },
}


def _all_text_sizes(fig) -> list[float]:
    """The sizes of every text a reader sees: labels, titles, legends, ticks of visible axes."""
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        if ax.axison:
            texts += [*ax.get_xticklabels(), *ax.get_yticklabels()]
    return [t.get_fontsize() for t in texts if t.get_text().strip()]


@pytest.mark.parametrize("strategy", ["joint", "var_list", "stop_gradient"])
def test_diagram_text_is_at_least_11_pt_in_at_most_8_inches(strategy: str) -> None:
    fig = plots.draw_two_paths(strategy)
    assert fig.get_size_inches()[0] <= 8.0
    assert min(_all_text_sizes(fig)) >= 11
    matplotlib.pyplot.close(fig)


def test_gradient_shares_one_panel_per_loss_and_none_marked() -> None:
    fig = plots.plot_gradient_shares(SHARES)
    assert fig.get_size_inches()[0] <= 8.0
    assert min(_all_text_sizes(fig)) >= 11
    left, right = fig.axes
    assert left.get_title() == "gradient of loss1" and right.get_title() == "gradient of loss2"
    # A None is drawn as a zero-height bar with the word None on it: 4 on the left, 4 on the right.
    assert [t.get_text() for t in left.texts].count("None") == 4
    assert [t.get_text() for t in right.texts].count("None") == 4
    heights = [round(bar.get_height(), 3) for bar in right.patches]
    # Bars go strategy by strategy: joint's three first.
    assert heights[:3] == [0.7, 0.8, 0.4]
    matplotlib.pyplot.close(fig)


def test_gradient_shares_refuse_mismatched_input() -> None:
    with pytest.raises(ValueError, match="at least one loss"):
        plots.plot_gradient_shares({})
    bad = {**SHARES, "loss2": {"joint": SHARES["loss2"]["joint"]}}
    with pytest.raises(ValueError, match="must list the strategies"):
        plots.plot_gradient_shares(bad)
    bad = {"loss1": {"joint": {"output1": 0.3}, "var_list": {"output2": 0.1}}}
    with pytest.raises(ValueError, match="must list the variables"):
        plots.plot_gradient_shares(bad)

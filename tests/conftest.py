"""Shared test setup: TensorFlow is configured by gradclinic before anything imports it."""

import gradclinic
import matplotlib
import pytest

# No display in CI; figures are inspected as objects, not shown.
matplotlib.use("Agg")

import matplotlib.pyplot as plt


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    gradclinic.set_up(seed=0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")

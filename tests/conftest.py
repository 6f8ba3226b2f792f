"""Shared test setup: gradclinic.set_up() configures TensorFlow before any test imports it."""

import gradclinic
import matplotlib
import pytest

# No display in CI; figures are inspected as objects, not shown.
matplotlib.use("Agg")

import matplotlib.pyplot as plt


def pytest_configure(config: pytest.Config) -> None:
    # Importing gradclinic changes nothing; set_up() does, and its environment variables take
    # full effect only before TensorFlow's first import, which test modules do at collection.
    gradclinic.set_up(seed=0)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    gradclinic.set_up(seed=0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")

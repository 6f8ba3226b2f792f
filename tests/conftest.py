"""Shared test setup: TensorFlow is configured by gradclinic before anything imports it."""

import gradclinic
import pytest


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    gradclinic.set_up(seed=0)

"""The book's figures and its animation (matplotlib), grouped by topic."""

from gradclinic.plots.bump import *  # noqa: F403
from gradclinic.plots.losssplit import *  # noqa: F403
from gradclinic.plots.stability import *  # noqa: F403

"""Figures for chapter 5: the two-head model and where each fix cuts the gradient."""

__all__: list[str] = []

"""Figures for chapters 1-3: the bump, its sigma-gradient, training curves, the animation."""

__all__: list[str] = []

"""Figures for chapter 4: the unsafe band for |x| > 1 and gradient size against sigma."""

__all__: list[str] = []

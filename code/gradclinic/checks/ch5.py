"""Self-checks for chapter 5's exercises."""

__all__: list[str] = []

"""Self-checks for chapter 1's exercises."""

__all__: list[str] = []

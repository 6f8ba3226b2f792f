"""Self-checks for chapter 2's exercises."""

__all__: list[str] = []

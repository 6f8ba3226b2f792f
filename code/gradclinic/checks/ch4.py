"""Self-checks for chapter 4's exercises."""

__all__: list[str] = []

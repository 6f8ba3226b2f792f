"""Self-checks for chapter 3's exercises."""

__all__: list[str] = []

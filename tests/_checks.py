"""How a test reads a self-check's result: passed, or not yet with a given message."""


def passed(result, key):
    """True when the check of exercise `key` passed."""
    return bool(result) and repr(result).startswith(f"Exercise {key}: passed.")


def failed_with(result, key, text):
    """True when the check of exercise `key` did not pass and its message contains text."""
    return (
        not result and repr(result).startswith(f"Exercise {key}: not yet.") and text in repr(result)
    )

"""The one error of a run that cannot start."""


class RunError(ValueError):
    """A run that cannot start as configured; the message is one sentence that says what to do."""

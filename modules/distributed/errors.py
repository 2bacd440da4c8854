"""The one error of starting the Ray lane (imports nothing of Ray)."""


class RayStartError(RuntimeError):
    """Ray or its actors could not start; the message says why, for the user as is."""

"""Errors that describe a problem with the user's input (config, data files, parameters).

Entry points print these as one clear message and exit with status 2 instead of a traceback.
"""


class UserInputError(ValueError):
    """Bad input: the message names the problem and the fix."""


class NonFiniteLossError(UserInputError):
    """Training diverged: a loss or the weights a step released became NaN or infinite.

    Raised by the training steps (:mod:`dpshare.models.checks`) so that the run stops, its
    ``run.json`` says "failed" with this message, and no ``metrics.json`` is written."""

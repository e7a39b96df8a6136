"""Errors that describe a problem with the user's input (config, data files, parameters).

Entry points print these as one clear message and exit with status 2 instead of a traceback.
"""


class UserInputError(ValueError):
    """Bad input: the message names the problem and the fix."""

"""The one base class of every error maxswitch raises for bad input, data or models.

Library messages describe the problem in the library's own terms; the CLI adds hints that
name its flags (``cli.py``). Catch ``MaxswitchError`` to catch them all.
"""


class MaxswitchError(ValueError):
    """Bad input, a damaged file or an unusable model: the message is meant for the user."""

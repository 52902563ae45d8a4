"""``python -m maxswitch``: the same as the ``maxswitch`` command."""

from .cli import entry

entry()

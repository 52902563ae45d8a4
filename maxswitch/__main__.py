"""``python -m maxswitch``: the same as the ``maxswitch`` command."""

from .cli import entry

if __name__ == "__main__":  # not when a worker process of ``bench -j N`` re-imports the main module
    entry()

"""``python -m maxswitch``: the same as the ``maxswitch`` command."""

from ._entry import main

if __name__ == "__main__":  # not when a worker process of ``bench -j N`` re-imports the main module
    main()

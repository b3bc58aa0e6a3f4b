"""``python -m desc_bench`` runs the command line, like the ``desc-bench`` script."""

from .cli import main

if __name__ == "__main__":
    main()

"""``python -m quartapp``: the standalone app on Hypercorn (see :mod:`quartapp.serve`)."""

from .serve import main

if __name__ == "__main__":
    main()

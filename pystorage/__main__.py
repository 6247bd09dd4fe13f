"""``python -m pystorage``: the same as the ``pystorage`` command."""

import sys

from pystorage.cli import main

if __name__ == "__main__":
    sys.exit(main())

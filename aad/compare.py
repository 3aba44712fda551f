"""``python -m aad.compare --config configs/compare.yaml [--data.root DIR] [--out DIR]``.

Every method on every machine type, one table and figures: see :mod:`aad.cli.compare`.
Exits with status 1 when a method failed on a group (its row says why; the rest ran).
"""

import sys

from aad.cli.compare import main

if __name__ == "__main__":
    table = main()
    sys.exit(1 if table.attrs.get("failures") else 0)

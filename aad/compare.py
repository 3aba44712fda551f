"""``python -m aad.compare --config configs/compare.yaml [--data.root DIR] [--out DIR]``.

Every method on every machine type, one table and figures: see :mod:`aad.cli.compare`.
Exits with status 1 when a method failed on a group (its row says why; the rest ran), and
with ``error: ...`` (status 1, no traceback) for a bad config, data root or output folder.
"""

import sys

from aad.cli.compare import main
from aad.data.audio import AudioDecodeError

if __name__ == "__main__":
    try:
        table = main()
    except (ValueError, TypeError, PermissionError, FileNotFoundError, AudioDecodeError) as error:
        sys.exit(f"error: {error}")
    sys.exit(1 if table.attrs.get("failures") else 0)

"""``python -m crank``: the same as the ``crank`` command."""

from __future__ import annotations

import sys

from crank.cli import main

if __name__ == "__main__":
    sys.exit(main())

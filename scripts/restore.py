#!/usr/bin/env python3
"""rqlite-py-restore from a checkout, without installing: same flags
(`python scripts/restore.py -h`)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rqlite_py.tools.restore import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

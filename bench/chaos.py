#!/usr/bin/env python3
"""The chaos loop of ``harness/chaos.py`` from the command line: ``kill -9``
a real ``dlengine run`` at random moments, again and again, and prove that
nothing is lost, corrupted, duplicated or downloaded twice.

Usage (from the repository root)::

    python bench/chaos.py --kills 50
    python bench/chaos.py --kills 200 --seed 7 --large-size 16MiB
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.chaos import main

if __name__ == "__main__":
    sys.exit(main())

import sys

from dlengine.cli import main

sys.exit(main())

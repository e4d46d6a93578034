import sys

from dlengine.cli import main

code = main()
from dlengine.cli.main import exit_now  # noqa: E402 - imported by main() by now; after run's spares started

exit_now(code)  # no interpreter teardown when nothing is left running
sys.exit(code)

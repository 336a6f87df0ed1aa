"""``make materialize``: see :mod:`fraud_cli.materialize`."""

import sys

from fraud_cli.materialize.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""``make pull-model``, ``make deploy``, ``make smoke``: see :mod:`fraud_cli.deploy`."""

import sys

from fraud_cli.deploy.cli import main

if __name__ == "__main__":
    sys.exit(main())

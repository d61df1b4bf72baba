"""Lets `python -m early_exit.data.prepare` run the command line."""

import sys

from early_exit.data.prepare.cli import main

sys.exit(main())

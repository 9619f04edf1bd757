"""``python -m pac_bench`` runs the command-line interface."""

import sys

from .cli import main

sys.exit(main())

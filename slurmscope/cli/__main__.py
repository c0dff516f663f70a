"""``python -m slurmscope.cli``: the ``slurmscope`` command."""

import sys

from .command import main

sys.exit(main())

"""``python -m worker`` is ``pendra``."""

import sys

from worker.cli import main

sys.exit(main())

"""``python -m ds2proxy``."""

import sys

from .cli import main

sys.exit(main())

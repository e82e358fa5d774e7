"""``python -m stgmtl``: the same as the ``stgmtl`` command."""

import sys

from stgmtl.cli import main

sys.exit(main())

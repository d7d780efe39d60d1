"""``python -m botrix_toolkit.cli``: the same as the ``botrix`` command."""

import sys

from botrix_toolkit.cli.main import main

sys.exit(main())

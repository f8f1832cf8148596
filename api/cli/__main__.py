"""``python -m winnow.api.cli``: the ``winnow`` command."""

import sys

from winnow.api.cli.main import main

sys.exit(main())

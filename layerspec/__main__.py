"""``python -m layerspec`` = the ``layerspec`` command."""

import sys

from .cli import main

sys.exit(main())

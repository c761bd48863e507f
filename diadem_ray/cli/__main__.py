"""``python -m diadem_ray.cli``."""

import sys

from diadem_ray.cli import main

sys.exit(main())

"""``python -m ros2_monodepth.tools.bench``."""

import sys

from . import main

sys.exit(main())

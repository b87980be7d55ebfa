"""``python -m experiments.report WORKDIR``."""

import sys

from experiments.report import main

sys.exit(main())

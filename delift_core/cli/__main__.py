"""`python -m delift_core.cli`: the `delift` command."""

import sys

from delift_core.cli import main

sys.exit(main())

"""`python -m app.cli.commands`: the same as the `teachbox` command."""

import sys

from app.cli.commands import main

sys.exit(main())

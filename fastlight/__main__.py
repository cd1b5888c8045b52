"""`python -m fastlight ...` = the `fastlight` command."""
import sys

from fastlight.cli import main

sys.exit(main())

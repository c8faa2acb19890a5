"""`python -m anymal.cli ...` (what `torchrun -m anymal.cli train RECIPE` runs on every rank)."""
import sys

from . import main

sys.exit(main())

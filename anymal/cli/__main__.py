"""`python -m anymal.cli ...` (what `torchrun -m anymal.cli train RECIPE` runs on every rank)."""
import sys

from . import main

if __name__ == "__main__":  # not when a spawned child (the server's engine) re-imports it
    sys.exit(main())

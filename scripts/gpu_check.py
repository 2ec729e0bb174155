"""`make gpu-check`'s figures: see `sinklab.bench.gpu_check` (python scripts/gpu_check.py --help)."""

import sys

from sinklab.bench.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())

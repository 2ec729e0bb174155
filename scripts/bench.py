"""`make bench`: see `sinklab.bench.cli` (python scripts/bench.py --help)."""

from sinklab.bench.cli import main

if __name__ == "__main__":
    main()

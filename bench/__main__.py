"""``python -m bench [--quick] [--only NAME] [--runs 3] [--out BENCHMARKS.md]``"""

from bench.runner import main

raise SystemExit(main())

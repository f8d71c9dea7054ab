"""`python -m proctop` runs the same entry point as the `proctop` console script."""

from proctop.cli.main import main

raise SystemExit(main())

"""Entry point of ``python -m bench`` (``make bench``)."""

from bench.cli import main

raise SystemExit(main())

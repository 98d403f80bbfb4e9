"""``python -m captum_gmar`` is the ``captum-gmar`` command line."""

from .cli import main

raise SystemExit(main())

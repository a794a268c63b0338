"""`python -m cxrscreen.engine ...` is the same as the `cxrscreen` command (used by the app for retraining)."""
from cxrscreen.engine.cli import main

raise SystemExit(main())

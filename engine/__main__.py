"""`python -m engine ...` is the same as the `cxrscreen` command (used by the app for retraining)."""
from engine.cli import main

raise SystemExit(main())

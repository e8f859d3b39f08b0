"""`python -m pipeline <stage>` is the same command as `gpt2zh <stage>`."""

from pipeline.cli import main

raise SystemExit(main())

"""`python -m pipeline <stage>` is the same command as `gpt2zh <stage>`."""

from pipeline.cli import main

if __name__ == "__main__":  # stage 2's spawned workers import this module again; it must not rerun main()
    raise SystemExit(main())

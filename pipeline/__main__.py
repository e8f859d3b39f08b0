"""`python -m gpt2zh <stage>` is the same command as `gpt2zh <stage>`."""

from gpt2zh.cli import main

if __name__ == "__main__":  # stage 2's spawned workers import this module again; it must not rerun main()
    raise SystemExit(main())

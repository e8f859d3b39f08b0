"""Hermetic CPU tests: real SentencePiece, transformers and subprocesses, no network."""

"""Existing models: where they come from (a folder or the Hub), their weights and tokenizers, loaded without
running any of their repository's code."""

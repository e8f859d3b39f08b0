"""gpt2zh: a staged pipeline for pretraining Chinese GPT-2 models.

Importing this package must stay free of Hugging Face imports: entry points prepare the cache
environment first (G13), then import the stages lazily.
"""

__version__ = "0.1.0"

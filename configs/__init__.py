"""The shipped configs, installed as package data gpt2zh.configs (`--config demo` works anywhere)."""

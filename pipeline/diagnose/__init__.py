"""`gpt2zh diagnose`: automated checks of data, model, gradients and training history (seeds 003 and 004)."""

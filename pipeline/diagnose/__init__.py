"""`gpt2zh diagnose`: automated checks of data, model, gradients and training history (D1-D12, N1)."""

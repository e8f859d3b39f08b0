"""Model FLOPs utilisation on GPUs: achieved FLOP/s over the card's dense half-precision peak."""

# Dense fp16/bf16 tensor-core peaks, TFLOP/s (no sparsity), as the training issue specifies.
PEAK_TFLOPS = {"H100": 989.0, "A100": 312.0, "5090": 210.0, "4090": 165.0, "T4": 65.0}
# What plans assume of a GPU: the low end of the 30-37 % nanoGPT reports for GPT-2 small on an A100 with
# torch.compile; stage 3's history measures the real figure.
REFERENCE_MFU = 0.30


def peak_tflops(gpu_name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key.lower() in gpu_name.lower():
            return value
    return None


def flops_per_token(n_params: int, n_layer: int, n_ctx: int, n_embd: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 12·L·T·d for attention (PaLM, appendix B)."""
    return 6.0 * n_params + 12.0 * n_layer * n_ctx * n_embd


def mfu(tokens_per_second: float, flops_token: float, gpu_name: str | None, num_gpus: int) -> float | None:
    """None on CPU or on a GPU missing from the table."""
    peak = peak_tflops(gpu_name) if gpu_name else None
    if peak is None or num_gpus < 1:
        return None
    return tokens_per_second * flops_token / (peak * 1e12 * num_gpus)


def reference_tokens_per_second(gpu_name: str | None, precision: str, processes: int, shape, block_size: int) \
        -> float | None:
    """Tokens a second at REFERENCE_MFU of the card's half-precision peak (shape: a ModelShape); None on CPU,
    in fp32 (the peak is the tensor cores') or on a GPU missing from the table."""
    peak = peak_tflops(gpu_name) if gpu_name and precision != "fp32" else None
    if peak is None:
        return None
    return REFERENCE_MFU * peak * 1e12 * processes / flops_per_token(shape.parameters, shape.n_layer, block_size,
                                                                     shape.n_embd)

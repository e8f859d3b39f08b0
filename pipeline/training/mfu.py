"""Model FLOPs utilisation: achieved FLOP/s over the card's dense peak for the precision trained in
(pipeline/hardware/peaks.py)."""

from gpt2zh.hardware.peaks import peak_tflops

# What plans assume of a GPU: the low end of the 30-37 % nanoGPT reports for GPT-2 small on an A100 with
# torch.compile; stage 3's history and `gpt2zh bench` measure the real figure.
REFERENCE_MFU = 0.30


def flops_per_token(n_params: int, n_layer: int, n_ctx: int, n_embd: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 12·L·T·d for attention (PaLM, appendix B)."""
    return 6.0 * n_params + 12.0 * n_layer * n_ctx * n_embd


def mfu(tokens_per_second: float, flops_token: float, peak: float | None, num_gpus: int) -> float | None:
    """peak: one card's TFLOP/s (peak_tflops); None on CPU or on a card missing from the table."""
    if peak is None or num_gpus < 1:
        return None
    return tokens_per_second * flops_token / (peak * 1e12 * num_gpus)


def reference_tokens_per_second(gpu_name: str | None, precision: str, tf32: bool, processes: int, shape,
                                block_size: int) -> float | None:
    """Tokens a second at REFERENCE_MFU of the card's peak for this precision (shape: a ModelShape); None on
    CPU or on a card missing from the table."""
    peak, _ = peak_tflops(gpu_name, precision, tf32)
    if peak is None:
        return None
    return REFERENCE_MFU * peak * 1e12 * processes / flops_per_token(shape.parameters, shape.n_layer, block_size,
                                                                     shape.n_embd)

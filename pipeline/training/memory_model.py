"""Peak GPU memory of one training step, estimated from the model's shape and the plan's choices.

A pure function: the plan picks the largest per-device batch whose estimate fits (PITFALLS.md PT12),
`gpt2zh plan` prints the parts, and stage 3 records CUDA's measured peak beside the estimate.

Bytes per token saved for backward, per transformer block, with hidden size h, a heads and block size s.
The structure follows Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models" (§4.1: 34·h bytes per token per layer in half precision plus 5·a·s for materialised attention
scores); the constants are what Hugging Face's GPT-2 saves under torch autocast, counted tensor by
tensor with torch.autograd.graph.saved_tensors_hooks (tests/test_memory_model.py repeats the count):
- the residual stream stays fp32 under autocast (the embeddings are fp32 and layer_norm runs in
  fp32), so both layer-norm inputs cost 4 bytes an element: 8·h;
- 16 more h-wide elements in the compute dtype (2 bytes in bf16/fp16, 4 in fp32): the cast inputs of
  the four matmuls (1 + 1 + 1 + 4 h-wide), q, k and v (3), one contiguous copy of q (1), the attention
  output (1) and the GELU input (4). Eager attention keeps q and k as the score matmul's inputs instead
  of the fused kernel's copies: 14;
- eager attention also saves its a·s scores per token: the fp32 softmax (4 bytes) and, under
  autocast, its cast copy (2). SDPA and FlashAttention-2 recompute them (Dao et al. 2022);
- GPT-2's original activation `gelu_new` is written as separate element-wise ops and saves 12 more
  h-wide elements; models built here use the fused `gelu_pytorch_tanh` (the same tanh formula);
- dropout > 0 saves its noise tensor in the dtype it multiplies: 2 per block (h-wide) and 4·h once
  at the embeddings; eager attention dropout one (bf16/fp16) or two (fp32) more copies of the scores.
Outside the blocks: the final layer-norm input (4·h), the lm_head input (h-wide, compute dtype), the
token and position ids (16 bytes), and the loss's log-probabilities (4·V, fp32: transformers upcasts
the logits before cross_entropy).
Activation checkpointing keeps only each block's fp32 input (4·h) and recomputes one block at a time
in the backward pass, so one block's full activations are added back.

The rest of the peak, at the start of the backward pass (all activations still alive):
- logits and loss, at their peak in the loss's backward: the saved log-probabilities (4·V a token), the
  gradient nll_loss hands back (4·V) and the one log_softmax computes from it (4·V), and in bf16/fp16 its
  half-precision cast (2·V): 14·V, 12·V in fp32 (measured on this CPU by peak memory at two vocabulary
  sizes: 13.2·V in bf16; the forward's logits, fp32 copy and log-probabilities are 10·V);
- weights: fp32 master weights (4 bytes a parameter) and, in bf16/fp16, autocast's cached half-precision
  copies of every matmul weight (2 bytes);
- gradients: fp32, 4 bytes a parameter; under DDP (more than one process) its gradient buckets as many
  again (the Trainer keeps gradient_as_bucket_view off);
- optimizer states: AdamW's two fp32 moments, 8 bytes a parameter; bitsandbytes' 8-bit Adam, 2 bytes
  (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization");
- a reserve of RESERVE_GIB for cuBLAS workspaces and the allocator's rounding (the CUDA context is
  outside torch's allocator and comes out of the training.gpu_memory_fraction headroom, with fragmentation).
With the chunked loss (training.chunked_loss, pipeline/training/chunked_loss.py) no full logits exist: the loss
keeps the hidden states' gradient (fp32, 4·h a token) in place of the lm_head input, the weight's gradient
(fp32, 4·V·h once) and one chunk of at most CHUNK_BYTES of fp32 logits with its half-precision copy.
torch.compile is estimated as eager: its partitioner saves no more than eager does, so the estimate is
an upper bound there.
"""

from dataclasses import dataclass

from gpt2zh.models.architecture import FUSED_GELU

GIB = 2**30
RESERVE_GIB = 0.75
HALF_PRECISIONS = ("bf16", "fp16")
# The chunked loss's chunk: the tokens whose fp32 logits fit in this many bytes
CHUNK_BYTES = 64 * 2**20


def chunk_tokens(vocab_size: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab_size))


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int
    dropout: float = 0.0
    activation: str = FUSED_GELU

    @property
    def parameters(self) -> int:
        """GPT-2 with the lm_head tied to the token embedding: per block 12·h² weights and 13·h biases/norms."""
        h = self.n_embd
        return self.vocab_size * h + self.n_positions * h + self.n_layer * (12 * h * h + 13 * h) + 2 * h

    @property
    def matmul_weights(self) -> int:
        """What autocast casts to half precision: every block's matmuls (with biases) and the tied lm_head."""
        h = self.n_embd
        return self.n_layer * (12 * h * h + 9 * h) + self.vocab_size * h


@dataclass(frozen=True)
class Setup:
    """The plan's choices that change memory."""
    block_size: int
    precision: str                 # bf16 | fp16 | fp32
    attention: str                 # sdpa | flash_attention_2 | eager
    eight_bit_adam: bool
    activation_checkpointing: bool
    processes: int = 1
    chunked_loss: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float                 # GiB, fp32 weights plus autocast's half-precision copies
    gradients: float               # GiB, with DDP's buckets
    optimizer_states: float
    activations: float             # saved for backward by the model, log-probabilities excluded
    logits_and_loss: float
    reserve: float

    @property
    def total(self) -> float:
        return sum(self.parts().values())

    def parts(self) -> dict[str, float]:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer_states": self.optimizer_states,
                "activations": self.activations, "logits_and_loss": self.logits_and_loss, "reserve": self.reserve}

    def as_dict(self) -> dict[str, float]:
        return {"total": round(self.total, 2), **{name: round(value, 2) for name, value in self.parts().items()}}


def _compute_bytes(precision: str) -> int:
    return 2 if precision in HALF_PRECISIONS else 4


def block_bytes_per_token(shape: ModelShape, setup: Setup) -> float:
    """What one transformer block saves for backward, per token (module docstring)."""
    h, half = shape.n_embd, _compute_bytes(setup.precision)
    eager = setup.attention == "eager"
    saved = 8 * h + (14 if eager else 16) * half * h
    if shape.activation != FUSED_GELU:
        saved += 12 * half * h
    scores = shape.n_head * setup.block_size  # attention scores per token
    if eager:
        saved += scores * (4 + (half if setup.precision in HALF_PRECISIONS else 0))
    if shape.dropout > 0:
        # measured: one more copy of the scores in bf16/fp16, two in fp32 (the noise and the dropped scores)
        saved += 2 * half * h + (scores * (half if setup.precision in HALF_PRECISIONS else 8) if eager else 0)
    return saved


def model_saved_bytes_per_token(shape: ModelShape, setup: Setup) -> float:
    """What the forward pass saves for backward per token, the loss's log-probabilities excluded."""
    h, half = shape.n_embd, _compute_bytes(setup.precision)
    lm_head_input = 0 if setup.chunked_loss else half * h  # the chunked loss keeps a gradient instead (below)
    outside = 4 * h + lm_head_input + 16 + (4 * h if shape.dropout > 0 else 0)
    per_block = 4 * h if setup.activation_checkpointing else block_bytes_per_token(shape, setup)
    return outside + shape.n_layer * per_block


def activation_bytes_per_token(shape: ModelShape, setup: Setup) -> float:
    """The saved tensors plus, with checkpointing, the one block recomputed at a time in the backward pass."""
    recomputed = block_bytes_per_token(shape, setup) if setup.activation_checkpointing else 0
    return model_saved_bytes_per_token(shape, setup) + recomputed


def loss_saved_bytes_per_token(shape: ModelShape) -> float:
    return 4 * shape.vocab_size


def logits_peak_bytes_per_token(shape: ModelShape, setup: Setup) -> float:
    """The loss's backward: the saved log-probabilities, two fp32 gradients of the logits' size, a half cast."""
    extra = 10 if setup.precision in HALF_PRECISIONS else 8
    return loss_saved_bytes_per_token(shape) + extra * shape.vocab_size


def chunked_loss_bytes(shape: ModelShape, setup: Setup, tokens: int) -> float:
    """The chunked loss at its peak: the hidden states' and the weight's fp32 gradients and one chunk of logits."""
    chunk = min(tokens, chunk_tokens(shape.vocab_size))
    copies = 4 + (2 if setup.precision in HALF_PRECISIONS else 0)
    return 4.0 * tokens * shape.n_embd + 4.0 * shape.vocab_size * shape.n_embd + chunk * shape.vocab_size * copies


def estimate_memory(shape: ModelShape, setup: Setup, per_device_batch: int) -> MemoryEstimate:
    tokens = per_device_batch * setup.block_size
    n = shape.parameters
    half_copies = 2 * shape.matmul_weights if setup.precision in HALF_PRECISIONS else 0
    buckets = 4 * n if setup.processes > 1 else 0
    return MemoryEstimate(
        weights=(4 * n + half_copies) / GIB,
        gradients=(4 * n + buckets) / GIB,
        optimizer_states=(2 if setup.eight_bit_adam else 8) * n / GIB,
        activations=tokens * activation_bytes_per_token(shape, setup) / GIB,
        logits_and_loss=(chunked_loss_bytes(shape, setup, tokens) if setup.chunked_loss
                         else tokens * logits_peak_bytes_per_token(shape, setup)) / GIB,
        reserve=RESERVE_GIB)


def largest_fitting_batch(shape: ModelShape, setup: Setup, candidates: list[int], limit_gib: float) -> int | None:
    """The largest candidate batch whose estimate is within limit_gib; None when none is."""
    fitting = [b for b in candidates if estimate_memory(shape, setup, b).total <= limit_gib]
    return max(fitting) if fitting else None

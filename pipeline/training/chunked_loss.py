"""The causal-LM loss without the full logits: the LM head and cross-entropy over chunks of tokens.

transformers' GPT-2 computes logits for every token, upcasts them to fp32 and keeps log-probabilities for
the backward pass: about 13 bytes per vocabulary entry per token at the loss's peak (memory_model.py), more
than all twelve blocks of GPT-2 small. Here each chunk's logits live only while the chunk is computed: the
forward pass takes the chunk's loss and, when gradients are wanted, the chunk's gradients at once (the
softmax minus the one-hot target, through the LM head), so the backward pass only scales what was kept
(the approach of fused linear-cross-entropy kernels, e.g. Liger's). The matmuls are the plain path's three
(logits, the hidden states' gradient, the weight's gradient), in the same dtype autocast would use; only
one chunk of logits exists at a time. On CUDA, Liger's Triton kernel does the same when it is installed.
"""

import functools
import importlib.util

import torch

from gpt2zh.training.memory_model import chunk_tokens

IGNORE_INDEX = -100


def loss_kernel(device_type: str, liger_installed: bool) -> str:
    """liger (a fused Triton kernel) on CUDA where the package is installed, else this module's chunks."""
    return "liger" if device_type == "cuda" and liger_installed else "pytorch"


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the plain LM head would multiply in: autocast's, or the hidden states' own."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


def _chunks(hidden, weight, targets, compute_dtype, want_grads: bool):
    """(loss sum, hidden grad, weight grad) of the summed cross-entropy, one chunk of tokens at a time."""
    w = weight.to(compute_dtype)
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if want_grads else None
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_grads else None
    step = chunk_tokens(weight.shape[0])
    for start in range(0, hidden.shape[0], step):
        h = hidden[start:start + step].to(compute_dtype)
        target = targets[start:start + step]
        valid = target != IGNORE_INDEX
        safe = target.masked_fill(~valid, 0)
        logits = (h @ w.T).float()
        logsumexp = torch.logsumexp(logits, dim=-1)
        picked = logits.gather(1, safe[:, None]).squeeze(1)
        loss += ((logsumexp - picked) * valid).sum()
        if want_grads:
            # d(loss)/d(logits) = softmax - one-hot target, zero on ignored tokens; computed in place
            logits.sub_(logsumexp[:, None]).exp_()
            logits[torch.arange(len(safe), device=safe.device), safe] -= 1.0
            if hidden.device.type != "cpu" or not bool(valid.all()):  # no host read of a GPU value per chunk
                logits.mul_(valid[:, None])
            grad_logits = logits.to(compute_dtype)
            rows = grad_hidden[start:start + step]
            if compute_dtype == hidden.dtype == torch.float32:  # straight into the outputs: no temporaries
                torch.mm(grad_logits, w, out=rows)
                grad_weight.addmm_(grad_logits.T, h)
            else:
                rows.copy_(grad_logits @ w)
                grad_weight += (grad_logits.T @ h).float()
    return loss, grad_hidden, grad_weight


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, compute_dtype):
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, grad_hidden, grad_weight = _chunks(hidden, weight, targets, compute_dtype, want_grads=want)
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype) if want else None)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


def _liger_loss_sum(hidden, weight, targets):
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")(weight, hidden, targets)


@torch.compiler.disable  # a Python loop over chunks; torch.compile keeps the model's blocks and calls this as is
def causal_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                   num_items_in_batch=None, kernel: str = "pytorch") -> torch.Tensor:
    """transformers' ForCausalLMLoss on the LM head's input: tokens predict the next label, -100 is ignored, the
    mean over counted tokens, or the sum over num_items_in_batch when the Trainer gives it (accumulation)."""
    targets = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1).to(hidden.device)
    flat = hidden.reshape(-1, hidden.shape[-1])
    if not torch.is_grad_enabled():  # evaluation: the loss alone (an autograd Function would take the gradients too)
        total = _chunks(flat, weight, targets, _compute_dtype(hidden), want_grads=False)[0]
    elif kernel == "liger":
        total = _liger_loss_sum(flat, weight, targets)
    else:
        total = _LinearCrossEntropy.apply(flat, weight, targets, _compute_dtype(hidden))
    if num_items_in_batch is None:
        return total / (targets != IGNORE_INDEX).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def use_chunked_loss(model, device_type: str = "cpu"):
    """Give a GPT-2 LM-head model's forward the chunked loss when it gets labels (training and evaluation);
    without labels (generation) it is the model's own forward. The class is untouched, so the saved model is a
    plain GPT2LMHeadModel, and the signature stays the original's for the Trainer's and generate's checks."""
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    kernel = loss_kernel(device_type, importlib.util.find_spec("liger_kernel") is not None)
    plain = model.forward

    @functools.wraps(plain)
    def forward(*args, labels=None, num_items_in_batch=None, **kwargs):
        if labels is None:
            return plain(*args, **kwargs)
        outputs = model.transformer(*args, **kwargs)
        loss = causal_lm_loss(outputs.last_hidden_state, model.lm_head.weight, labels, num_items_in_batch, kernel)
        return CausalLMOutputWithCrossAttentions(loss=loss, logits=None, cache=outputs.cache,
                                                 hidden_states=outputs.hidden_states, attentions=outputs.attentions)

    model.forward = forward
    model.chunked_loss_kernel = kernel
    return model


"""Checks that run the model: loss and outputs at initialisation, labels aligned with inputs, gradient
norms per layer on a real batch, and whether the model can memorise one batch.

Small on purpose (a few blocks, cut to OVERFIT_TOKENS for the overfit check) so they take seconds on a CPU.
"""

import math
import re

import numpy as np
import torch

from gpt2zh.diagnose.findings import FAIL, OK, WARN, Finding

VANISHING = 1e-7     # the debugging guide's threshold for a layer whose gradient has vanished (D7)
EXPLODING = 1e3      # a layer norm this large before clipping means updates are dominated by clipping
OVERFIT_STEPS = 40
OVERFIT_TOKENS = 128
OVERFIT_BLOCKS = 4
OVERFIT_TARGET = 0.6  # the loss on the memorised batch must lose at least 40 % of where it started
CLEARLY_BETTER = 0.5  # nats: the reference learning rate beats the run's by this much -> the run's is wrong
REFERENCE_LR = 1e-3   # a learning rate that memorises one batch for GPT-2 sizes up to ~100 M parameters


def _batch(blocks: np.ndarray, count: int, tokens: int | None = None) -> torch.Tensor:
    rows = np.asarray(blocks[:count], dtype=np.int64)
    return torch.from_numpy(rows[:, :tokens] if tokens else rows)


def fresh_model(model_config, seed: int):
    from transformers import set_seed

    from gpt2zh.training.model import build_model

    set_seed(seed)
    return build_model(model_config)


def check_initialisation(model, validation: np.ndarray, vocab_size: int) -> Finding:
    model.eval()
    ids = _batch(validation, 8)
    with torch.no_grad():
        output = model(input_ids=ids, labels=ids)
    loss, logits = float(output.loss), output.logits.float()
    expected = math.log(vocab_size)
    evidence = (f"initial loss {loss:.3f} vs ln(vocab) {expected:.3f}; logits {float(logits.min()):.2f}.."
                f"{float(logits.max()):.2f}, std {float(logits.std()):.3f}")
    if not math.isfinite(loss):
        return Finding("initialisation", FAIL, "non-finite loss at initialisation", evidence,
                       "check the model config (n_embd divisible by n_head) and the precision", "D6")
    if abs(loss - expected) > 1.0 or float(logits.std()) > 2.0:
        return Finding("initialisation", WARN, "initial loss far from ln(vocab)", evidence,
                       "a freshly initialised model should be uncertain: check initializer_range (0.02) and "
                       "that vocab_size matches the tokenizer", "D6")
    return Finding("initialisation", OK, "initial loss close to ln(vocab)", evidence)


def check_alignment(model, train: np.ndarray) -> Finding:
    """The collator's labels equal the inputs, and the model's loss is next-token prediction."""
    from gpt2zh.training.data import BlockCollator

    batch = BlockCollator()([{"input_ids": row} for row in np.asarray(train[:2])])
    same = torch.equal(batch["labels"], batch["input_ids"])
    model.eval()
    with torch.no_grad():
        output = model(**batch)
    logits = output.logits[:, :-1].float()
    manual = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                               batch["input_ids"][:, 1:].reshape(-1))
    shifted = abs(float(manual) - float(output.loss)) < 1e-3
    evidence = (f"labels {'equal' if same else 'differ from'} input_ids; model loss {float(output.loss):.4f}, "
                f"next-token cross-entropy {float(manual):.4f}")
    if not (same and shifted):
        return Finding("data", FAIL, "labels are not aligned with the inputs", evidence,
                       "GPT-2 shifts labels itself: pass labels = input_ids, never pre-shifted", "D8")
    return Finding("data", OK, "labels aligned (the model predicts the next token)", evidence)


def _layer(name: str) -> str:
    match = re.search(r"\.h\.(\d+)\.", name)
    if match:
        return f"block {int(match.group(1))}"
    for key in ("wte", "wpe", "ln_f", "lm_head"):
        if f".{key}." in f".{name}":
            return key
    return name.split(".")[0]


def check_gradients(model, train: np.ndarray, weights_source: str) -> Finding:
    model.train()
    model.zero_grad()
    ids = _batch(train, 4)
    output = model(input_ids=ids, labels=ids)
    output.loss.backward()
    norms: dict[str, float] = {}
    nonfinite = []
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            continue
        value = float(parameter.grad.float().norm())
        if not math.isfinite(value):
            nonfinite.append(name)
        layer = _layer(name)
        norms[layer] = math.sqrt(norms.get(layer, 0.0) ** 2 + (value**2 if math.isfinite(value) else 0.0))
    model.zero_grad()
    total = math.sqrt(sum(v**2 for v in norms.values()))
    table = ["| layer | gradient norm |", "|---|---|"] + [f"| {k} | {v:.3e} |" for k, v in norms.items()]
    vanishing = [k for k, v in norms.items() if v < VANISHING]
    exploding = [k for k, v in norms.items() if v > EXPLODING]
    evidence = (f"{weights_source}, loss {output.loss.item():.3f}: total norm {total:.3g}, layers "
                f"{min(norms.values()):.2e}..{max(norms.values()):.2e}")
    if nonfinite or not math.isfinite(output.loss.item()):
        return Finding("gradients", FAIL, "non-finite gradients", evidence + f"; NaN/Inf in {', '.join(nonfinite[:4])}",
                       "lower the learning rate, use bf16 rather than fp16, check the data (D1)", "D7", table)
    if vanishing:
        return Finding("gradients", WARN, "vanishing gradients", evidence + f"; below {VANISHING:g}: "
                       f"{', '.join(vanishing)}", "check for dead layers or a learning rate so high it saturated "
                       "the weights; retrain from an earlier checkpoint", "D7", table)
    if exploding:
        return Finding("gradients", WARN, "exploding gradients", evidence + f"; above {EXPLODING:g}: "
                       f"{', '.join(exploding)}", "keep gradient clipping on (--optimization-max-grad-norm 1.0), "
                       "lower the learning rate, lengthen warmup", "D7", table)
    return Finding("gradients", OK, "gradient norms healthy", evidence, details=table)


def _memorise(model_config, seed: int, ids: torch.Tensor, learning_rate: float, max_grad_norm: float) -> list[float]:
    model = fresh_model(model_config, seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.0)
    losses = []
    for _ in range(OVERFIT_STEPS):
        loss = model(input_ids=ids, labels=ids).loss
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return losses


def _fits(losses: list[float]) -> bool:
    return math.isfinite(losses[-1]) and losses[-1] < OVERFIT_TARGET * losses[0]


def check_overfit(model_config, seed: int, train: np.ndarray, learning_rate: float, max_grad_norm: float,
                  alignment_ok: bool) -> Finding:
    """A model that cannot memorise one batch will not learn the corpus (D8)."""
    model_config = model_config.__class__(**{**model_config.to_dict(), "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                              "attn_pdrop": 0.0})
    ids = _batch(train, OVERFIT_BLOCKS, OVERFIT_TOKENS)
    losses = _memorise(model_config, seed, ids, learning_rate, max_grad_norm)
    evidence = (f"{OVERFIT_BLOCKS} blocks x {ids.shape[1]} tokens, {len(losses)} AdamW steps at the run's learning "
                f"rate {learning_rate:g}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if _fits(losses):
        return Finding("overfit", OK, "the model memorises one batch", evidence)
    if not alignment_ok:
        return Finding("overfit", FAIL, "cannot memorise one batch: labels misaligned", evidence,
                       "fix the label alignment first (see the data finding)", "D8")
    if not math.isclose(learning_rate, REFERENCE_LR, rel_tol=0.5):
        reference = _memorise(model_config, seed, ids, REFERENCE_LR, max_grad_norm)
        evidence += f"; at {REFERENCE_LR:g}: {reference[0]:.3f} -> {reference[-1]:.3f}"
        run_final = losses[-1] if math.isfinite(losses[-1]) else math.inf
        if _fits(reference) or reference[-1] < run_final - CLEARLY_BETTER:
            direction = "too high" if learning_rate > REFERENCE_LR else "too low"
            return Finding("overfit", FAIL, f"cannot memorise one batch: learning rate {direction}", evidence,
                           f"set --optimization-learning-rate near {REFERENCE_LR:g} (GPT-2 small uses 6e-4)", "D8")
    return Finding("overfit", FAIL, "cannot memorise one batch", evidence,
                   "with labels aligned and a sane learning rate this points at the model: check n_layer/n_embd, "
                   "dropout and the precision", "D8")

"""logs/samples.md: text generated from fixed Chinese prompts at each evaluation and at the end.

Sampling uses its own seeded generator state (torch.random.fork_rng), so it never moves the
training RNG: a resumed run stays bit-identical to an uninterrupted one.
"""

from pathlib import Path

import torch

TEMPERATURE, TOP_K = 0.8, 50  # seed 000's sampling settings


def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[tuple[str, str]]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
            output = model.generate(ids, do_sample=True, temperature=TEMPERATURE, top_k=TOP_K,
                                    max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    attention_mask=torch.ones_like(ids))
            results.append((prompt, tokenizer.decode(output[0][ids.shape[1]:], skip_special_tokens=True)))
    if was_training:
        model.train()
    return results


def append_samples(path: Path, heading: str, samples: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"## {heading}", ""]
    lines += [f"- **{prompt}**{continuation.replace(chr(10), ' ')}" for prompt, continuation in samples]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n\n")

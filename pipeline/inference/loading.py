"""A model ready for inference: its files fetched (a folder, a run directory or a Hub id), its tokenizer and
document markers, and its weights on this machine's device — through pipeline/models/, so the safe-loading
rules (GPT-2 only, no repository code, pickles through weights_only) are the same as stage 3's.

The GPU when there is one, under bf16 autocast where the card has bf16 (fp32 elsewhere: fp16 could overflow
a logit); fp32 on the CPU.
"""

import contextlib
from dataclasses import dataclass
from functools import cached_property

from gpt2zh.inference.script import trained_script
from gpt2zh.models.source import ModelSource, fetch_model, read_config
from gpt2zh.models.text import load_tokenizer, special_token_ids

FLAG = "--model"


def inference_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device):
    """bf16 autocast on a GPU that has it; nothing (fp32) on the CPU or on older cards."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device) -> str:
    import torch

    return "bf16 autocast" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


@dataclass
class InferenceModel:
    source: ModelSource
    tokenizer: object
    ids: dict[str, int]  # unk/bos/eos/pad as stages 2 and 3 use them (pipeline/models/text.py:special_token_ids)
    script: str = "keep"  # the Chinese script its corpus was converted to (pipeline/inference/script.py)

    @property
    def where(self) -> str:
        return f"{FLAG} {self.source.reference!r}"

    @property
    def label(self) -> str:
        return self.source.label

    @cached_property
    def context(self) -> int:
        """n_positions: GPT-2's position table has no row beyond it."""
        from gpt2zh.models.architecture import gpt2_fields

        return gpt2_fields(read_config(self.source, FLAG))["n_positions"]

    @property
    def special_strings(self) -> tuple[str, ...]:
        return tuple(self.tokenizer.all_special_tokens)

    def weights(self, device):
        """GPT2LMHeadModel with the weights, in eval mode (dropout off), on device."""
        from gpt2zh.models.weights import load_model

        model, _ = load_model(self.source, self.where)
        return model.to(device).eval()


def open_model(reference: str) -> InferenceModel:
    """Files, tokenizer and markers; the weights are read later by .weights(), one model at a time."""
    source = fetch_model(reference, FLAG)
    where = f"{FLAG} {reference!r}"
    read_config(source, FLAG)  # not a GPT-2: one line before the tokenizer loads
    tokenizer = load_tokenizer(source.folder, where)
    return InferenceModel(source, tokenizer, special_token_ids(tokenizer, where), trained_script(source.folder))

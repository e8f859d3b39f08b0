"""The GPT-2 model: sizes from the config, vocabulary and special-token ids from stage 1's tokenizer, and
its starting weights: random, or a base model's (`--model-init-from`)."""

import logging

from gpt2zh.config.schema import ModelConfig
from gpt2zh.errors import UserError
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.models.architecture import FUSED_GELU

log = logging.getLogger("gpt2zh")
COMPILE_PREFIX = "_orig_mod."


def gpt2_config(model: ModelConfig, tokenizer_manifest: TokenizerManifest, attention: str):
    """GPT2Config whose ids are the tokenizer's; GPT-2's 50256 defaults never appear. The activation is GPT-2's
    tanh GELU as one fused kernel: gelu_new computes the same formula in separate ops that keep 12 more
    values per hidden unit for backward (pipeline/training/memory_model.py). A model that receives a base
    model's weights takes that model's architecture too (`base_architecture`, recorded by stage 1: BM11)."""
    from transformers import GPT2Config

    ids = tokenizer_manifest.special_token_ids
    architecture = {"activation_function": FUSED_GELU, **(tokenizer_manifest.base_architecture or {})}
    return GPT2Config(
        vocab_size=tokenizer_manifest.vocab_size, n_positions=model.n_positions, n_embd=model.n_embd,
        n_layer=model.n_layer, n_head=model.n_head, resid_pdrop=model.dropout, embd_pdrop=model.dropout,
        attn_pdrop=model.dropout, bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"],
        attn_implementation=attention, **architecture)


def build_model(config):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    # "GPT2LMHeadModel" matches none of transformers' loss-name patterns, so it warns on the first
    # forward and falls back to the causal-LM loss; name that loss explicitly instead.
    model.loss_type = "ForCausalLM"
    return model


def strip_compile_prefix(state_dict: dict) -> dict:
    """(G3) torch.compile saves keys as `_orig_mod.transformer.wte.weight`; load them without it."""
    return {key[len(COMPILE_PREFIX):] if key.startswith(COMPILE_PREFIX) else key: value
            for key, value in state_dict.items()}


def adopted_base(init_from: str, tokenizer_manifest: TokenizerManifest, tokenizer_dir) -> dict | None:
    """The base model stage 1 adopted, which must be the one this command names (PITFALLS.md BM12): the
    tokenizer and the dataset's ids belong to it, and stage 3 loads its weights."""
    base = tokenizer_manifest.base_model
    adopted = base["reference"] if base else ""
    if init_from != adopted:
        named = f"--model-init-from {init_from}" if init_from else "no --model-init-from (a model from scratch)"
        left = f"the tokenizer of {base['label']}" if base else "a tokenizer trained on the corpus"
        keep = f"pass --model-init-from {adopted}" if adopted else "drop --model-init-from"
        raise UserError(f"this command names {named}, but stage 1 left {left} in {tokenizer_dir}",
                        f"{keep}, or rebuild from stage 1 (`gpt2zh run --run-dir {tokenizer_dir.parent} "
                        "--from-stage train-tokenizer --force`)")
    return base


def start_from_base(model, base: dict | None, resume) -> dict | None:
    """Load the base model stage 1 adopted (its manifest's `base_model`) into model, unless the run resumes its
    own checkpoint, which comes first (PITFALLS.md BM1); returns what the summary says about it."""
    if base is None:
        return None
    about = {"model": base["label"], "hub": base.get("hub"), "commit": base.get("commit"),
             **({"provider": base["provider"]} if base.get("provider") else {})}
    if resume is not None:
        log.info("pretrain: resuming %s; --model-init-from only decides where a run without a checkpoint starts",
                 resume.name)
        return {**about, "weights": f"from {resume.name}, which started from it"}
    from gpt2zh.models.weights import load_base_weights

    about["weights"] = load_base_weights(model, base)  # prepare_resume said where the run starts
    return about

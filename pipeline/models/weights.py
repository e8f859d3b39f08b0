"""Someone else's GPT-2 weights, read without running code: safetensors, or a pickle checkpoint through
torch's weights_only loader (tensors and plain containers only; anything else is refused, not executed).

Keys are brought to GPT2LMHeadModel's layout (checkpoints saved from GPT2Model lack the `transformer.`
prefix; old ones carry the causal-mask buffers `attn.bias` / `attn.masked_bias`), and every parameter must
be found: a partial load would train a half-random model without a word.
"""

import json
import re
from pathlib import Path

from gpt2zh.errors import UserError

SAFETENSORS_FORMAT = "safetensors"
PICKLE_FORMAT = "pickle checkpoint read with torch.load(weights_only=True)"
TIED = {"lm_head.weight"}  # GPT-2 ties the output layer to the token embedding: restored by the tie
MASK_BUFFERS = re.compile(r"(^|\.)attn\.(bias|masked_bias)$")
PREFIX = "transformer."


def _shards(folder: Path, single: str, index: str) -> list[Path]:
    if (folder / single).is_file():
        return [folder / single]
    if (folder / index).is_file():
        weight_map = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    return []


def read_weights(folder: Path, where: str) -> tuple[dict, str]:
    """(state dict, which format it came from) for the weights in folder."""
    import torch
    from safetensors.torch import load_file

    if shards := _shards(folder, "model.safetensors", "model.safetensors.index.json"):
        state = {}
        for shard in shards:
            state.update(load_file(str(shard)))
        return state, SAFETENSORS_FORMAT
    if shards := _shards(folder, "pytorch_model.bin", "pytorch_model.bin.index.json"):
        state = {}
        for shard in shards:
            try:
                state.update(torch.load(shard, map_location="cpu", weights_only=True))
            except Exception as err:  # pickle.UnpicklingError and friends: the file holds more than tensors
                raise UserError(f"{where}: {shard.name} holds objects other than tensors, which weights_only "
                                f"loading refuses ({type(err).__name__}); nothing in it was run",
                                "use a copy of the model saved as model.safetensors") from None
        return state, PICKLE_FORMAT
    raise UserError(f"{where}: no model.safetensors or pytorch_model.bin in {folder}",
                    "point at a folder (or Hub repository) that holds the PyTorch weights")


def gpt2_keys(state: dict) -> dict:
    """GPT2LMHeadModel's key names, without the causal-mask buffers older checkpoints saved."""
    state = {key: value for key, value in state.items() if not MASK_BUFFERS.search(key)}
    if not any(key.startswith(PREFIX) for key in state):  # saved from GPT2Model
        state = {key if key in TIED else PREFIX + key: value for key, value in state.items()}
    return state


def load_into(model, state: dict, where: str) -> None:
    """Every parameter of model from state, or a one-line error naming what is missing or extra."""
    try:
        missing, unexpected = model.load_state_dict(gpt2_keys(state), strict=False)
    except RuntimeError as err:  # a size mismatch
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err)[:200])
        raise UserError(f"{where}: the weights do not fit the model built from its config.json ({detail})",
                        "check that config.json and the weights belong together") from None
    if model.config.tie_word_embeddings:  # else lm_head.weight is a matrix of its own, and must be there (BM11)
        missing = [key for key in missing if key not in TIED]
    if missing or unexpected:
        problems = (f"missing {', '.join(missing[:3])}" if missing else "") + \
                   ("; " if missing and unexpected else "") + \
                   (f"unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        raise UserError(f"{where}: the weights are not a GPT-2 checkpoint of this shape ({problems})",
                        "point at a GPT2LMHeadModel checkpoint (model_type gpt2)")
    model.tie_weights()


def base_source(base: dict):
    """The files of the base model stage 1 adopted (its manifest's `base_model`): at the commit stage 1 pinned,
    or a folder with the files stage 1 hashed; one line otherwise. Stage 3 asks before it touches anything."""
    from gpt2zh.models.source import fetch_model

    source = fetch_model(base["reference"], "--model-init-from", commit=base.get("commit"))
    if source.identity() != {key: value for key, value in base.items() if key != "label"}:
        raise UserError(f"--model-init-from {base['reference']!r}: {source.folder} changed since stage 1 adopted "
                        "its tokenizer", "rerun from stage 1 (`gpt2zh run --from-stage train-tokenizer --force`) "
                        "to start from the model as it is now")
    return source


def load_base_weights(model, base: dict) -> str:
    """The weights of the base model stage 1 adopted; returns the format they were read from, for the summary."""
    where = f"--model-init-from {base['reference']!r}"
    source = base_source(base)
    state, weights_format = read_weights(source.folder, where)
    load_into(model, state, where)
    return weights_format


def load_model(source, where: str, attention: str = "sdpa"):
    """(GPT2LMHeadModel with source's weights, the format they were read from), in eval mode, on the CPU.
    Built from config.json by the GPT-2 class itself: no repository code runs, whatever config.json names."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2zh.models.architecture import gpt2_fields
    from gpt2zh.models.source import read_config

    fields = gpt2_fields(read_config(source, where.split(" ")[0]))  # GPT-2, or one line
    model = GPT2LMHeadModel(GPT2Config.from_dict(fields, attn_implementation=attention))
    state, weights_format = read_weights(source.folder, where)
    load_into(model, state, where)
    return model.eval(), weights_format

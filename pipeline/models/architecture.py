"""A base model's config.json as GPT-2 reads it, and the architecture choices a model built to receive its
weights must share with it.

Sizes are not enough: a GPT-2 whose output layer is its own matrix (`tie_word_embeddings: false`) loaded
into a tied model would have that matrix overwritten by the embedding, and another layer-norm epsilon or
activation computes another function with the same weights (PITFALLS.md BM11).
"""

# GPT2Config fields, other than the sizes, that change what the same weights compute
ARCHITECTURE = ("activation_function", "layer_norm_epsilon", "n_inner", "tie_word_embeddings", "scale_attn_weights",
                "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn")
SIZES = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")
FUSED_GELU = "gelu_pytorch_tanh"  # the activation our models are built with: GPT-2's tanh GELU, one kernel
SAME_AS_FUSED = "gelu_new"  # GPT-2's tanh GELU in separate ops; FUSED_GELU is the same formula in one kernel


def gpt2_fields(config_json: dict) -> dict:
    """config.json with every GPT2Config field filled in: its defaults for what the file omits, and n_ctx,
    the name configs older than transformers 4 give the context length, read as n_positions."""
    from transformers import GPT2Config

    from gpt2zh.models.source import hide_outside_vocabulary_ids

    hide_outside_vocabulary_ids()
    fields = dict(config_json)
    if "n_positions" not in fields and "n_ctx" in fields:
        fields["n_positions"] = fields["n_ctx"]
    return GPT2Config.from_dict(fields).to_dict()


def base_architecture(config_json: dict) -> dict:
    """What stage 3 builds its model with besides the sizes, recorded by stage 1 beside the adopted tokenizer."""
    fields = gpt2_fields(config_json)
    architecture = {name: fields[name] for name in ARCHITECTURE}
    if architecture["activation_function"] == SAME_AS_FUSED:
        architecture["activation_function"] = FUSED_GELU
    return architecture


def base_sizes(config_json: dict) -> dict:
    """The sizes and vocabulary, recorded by stage 1 for commands that run after the base folder has moved."""
    fields = gpt2_fields(config_json)
    return {name: fields[name] for name in SIZES}

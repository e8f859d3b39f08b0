"""`gpt2zh generate --model M "提示"`: continuations of a prompt, streamed to the terminal as they are sampled.

The prompt is first converted to the Chinese script the model was trained on (pipeline/inference/script.py),
then encoded the way stage 2 encodes a document: without the tokenizer's automatic special tokens
(a UER tokenizer would wrap it in [CLS] ... [SEP], and that [SEP] ends the document before it is continued),
after the start-of-document id (bos: <|endoftext|> for this pipeline's models, which is also the separator
every training document follows; [CLS] for UER's). Generation stops at the document separator (eos; [SEP]).

Settings come from the model's generation_config.json when it has one (stage 3 writes do_sample, temperature
0.8, top-k 50, 64 new tokens), else the same values; flags override, and a sampling flag turns sampling on.
Sample i is drawn right after torch.manual_seed(seed + i): the same --seed gives the same text on the same
machine and software (a GPU's kernels draw other numbers than the CPU's).
"""

import json
import logging
import random
import sys

from gpt2zh.errors import UserError
from gpt2zh.inference.loading import InferenceModel, autocast, inference_device, open_model
from gpt2zh.inference.script import NAMES, in_script
from gpt2zh.models.text import prompt_ids

log = logging.getLogger("gpt2zh")
DEFAULT_MAX_NEW_TOKENS = 64  # what stage 3 writes into generation_config.json
SAMPLING_FLAGS = ("temperature", "top_k", "top_p")


def _check_arguments(args) -> None:
    if not args.prompt.strip():
        raise UserError("generate: PROMPT (the text to continue) is empty",
                        'give the text to continue, e.g. gpt2zh generate --model runs/demo "今天"')
    bounds = {"max_new_tokens": (args.max_new_tokens, lambda v: v >= 1, ">= 1"),
              "temperature": (args.temperature, lambda v: v >= 0, ">= 0 (lower is more conservative, 0 greedy)"),
              "top_k": (args.top_k, lambda v: v >= 0, ">= 0 (0 = every token)"),
              "top_p": (args.top_p, lambda v: 0 < v <= 1, "in (0, 1]"),
              "num_samples": (args.num_samples, lambda v: v >= 1, ">= 1")}
    for name, (value, valid, wanted) in bounds.items():
        if value is not None and not valid(value):
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"generate: {flag} {value} is out of range", f"pass {flag} {wanted}")


def _outside(token_ids, vocab_size: int) -> bool:
    ids = token_ids if isinstance(token_ids, list) else [token_ids]
    return token_ids is None or any(i is None or not 0 <= i < vocab_size for i in ids)


def generation_settings(model: InferenceModel, vocab_size: int, args):
    """(GenerationConfig, where its defaults came from)."""
    from transformers import GenerationConfig

    from gpt2zh.training.samples import TEMPERATURE, TOP_K

    if (file := model.source.folder / "generation_config.json").is_file():
        config = GenerationConfig.from_pretrained(str(model.source.folder))
        origin = "the model's generation_config.json"
        if "do_sample" not in json.loads(file.read_text(encoding="utf-8")):  # openai-community/gpt2's names ids only
            config.do_sample = True
            config.temperature = TEMPERATURE if config.temperature in (None, 1.0) else config.temperature
            config.top_k = TOP_K if config.top_k in (None, 50) else config.top_k
            origin += " (which sets no sampling: temperature and top-k by default)"
    else:
        config = GenerationConfig(do_sample=True, temperature=TEMPERATURE, top_k=TOP_K)
        origin = "defaults: the model has no generation_config.json"
    if config.max_new_tokens is None:
        config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    typed = {name: getattr(args, name) for name in ("max_new_tokens", *SAMPLING_FLAGS)
             if getattr(args, name) is not None}
    if typed.keys() & set(SAMPLING_FLAGS):
        config.do_sample = True
    for name, value in typed.items():
        setattr(config, name, value)
    if typed.get("temperature") == 0:  # the most likely token each step
        config.do_sample, config.temperature, config.top_k, config.top_p = False, None, None, None
    # UER's config.json keeps GPT-2's 50256 for eos, outside its 21,128-token vocabulary: its documents end at [SEP].
    if _outside(config.eos_token_id, vocab_size):
        config.eos_token_id = model.ids["eos"]
    if _outside(config.pad_token_id, vocab_size):
        config.pad_token_id = model.ids["pad"]
    flags = ", ".join(f"--{name.replace('_', '-')}" for name in typed)
    return config, origin + (f"; {flags} from the command line" if typed else "")


def _describe(config) -> str:
    if not config.do_sample:
        return f"greedy, up to {config.max_new_tokens} new tokens"
    chosen = [f"{label} {value:g}" for label, value in (("temperature", config.temperature), ("top-k", config.top_k),
                                                        ("top-p", config.top_p)) if value is not None]
    return f"sampling with {', '.join(chosen) or 'the full distribution'}, up to {config.max_new_tokens} new tokens"




def _fit_context(config, prompt_length: int, context: int, where: str, typed: bool) -> None:
    """GPT-2 has no position beyond n_positions: the prompt and what follows it must fit. A typed
    --max-new-tokens that does not fit is warned about; a default is shortened quietly."""
    if prompt_length >= context:
        raise UserError(f"generate: the prompt is {prompt_length} tokens with the start marker, and {where} reads "
                        f"at most {context}", "shorten the prompt")
    if prompt_length + config.max_new_tokens > context:
        config.max_new_tokens = context - prompt_length
        (log.warning if typed else log.info)(
            "generate: %d new tokens at most: the model's context is %d tokens and the prompt takes %d",
            config.max_new_tokens, context, prompt_length)


def prompt_in_model_script(model: InferenceModel, prompt: str) -> str:
    """The prompt in the script the model was trained on (PITFALLS.md NU12), with one line when that changed it."""
    (converted,), changed = in_script(model.script, [prompt])
    if changed:
        log.info("generate: the prompt converted to %s, the script %s was trained on (its data.chinese_script "
                 "%s): %s", NAMES[model.script], model.label, model.script, converted)
    return converted


def run_generate(args) -> int:
    _check_arguments(args)  # before torch is imported: a typo is answered at once
    import torch

    from gpt2zh.inference.streaming import TerminalStreamer

    model = open_model(args.model)
    device = inference_device()
    network = model.weights(device)
    config, origin = generation_settings(model, network.config.vocab_size, args)
    prompt = prompt_in_model_script(model, args.prompt)
    ids = prompt_ids(model.tokenizer, prompt, model.ids["bos"])
    _fit_context(config, len(ids), model.context, model.where, args.max_new_tokens is not None)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    log.info("generate: %s on %s, %s (%s); seed %d (--seed %d gives the same text again)", model.label,
             device.type, _describe(config), origin, seed, seed)
    inputs = torch.tensor([ids], device=device)
    for index in range(args.num_samples):
        if args.num_samples > 1:
            print(f"── sample {index + 1} of {args.num_samples} (seed {seed + index}) ──", flush=True)
        sys.stdout.write(prompt)  # as the model read it: the continuation follows this text
        torch.manual_seed(seed + index)  # right before the sample: each one repeats alone
        with torch.no_grad(), autocast(device):
            network.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config,
                             streamer=TerminalStreamer(model.tokenizer))
        print(flush=True)
    return 0

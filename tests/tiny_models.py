"""Tiny but real causal-LM folders laid out the way published Hub models are, built in a fraction of a second.

Tests that start from a pretrained model need one without the internet and without minutes of CPU: these
builders write a 2-layer, 32-wide GPT-2 with the tokenizer files and config keys of a real repository, so
that what `from_pretrained` (and the pipeline on top of it) has to cope with is what users' models have.
`model_files` turns a folder into the `files` that `LocalHub.add_model` serves.
"""

import json
import pickle
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

BERT_SPECIAL_TOKENS = ["[PAD]", "[unused1]", "[unused2]", "[unused3]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FULL_WIDTH_PUNCTUATION = "，。！？：；（）《》"
ENDOFTEXT = "<|endoftext|>"
# The tokenizer of a folder whose only point is its weights file.
GREETING = "你好，世界。今天天气很好！"


def tiny_gpt2(vocab_size: int, seed: int, **config) -> GPT2LMHeadModel:
    """The same random weights for the same seed, so that two builds of one folder are byte-identical."""
    torch.manual_seed(seed)
    fields = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 128, "activation_function": "gelu_new",
              "vocab_size": vocab_size, **config}
    return GPT2LMHeadModel(GPT2Config(**fields))


def character_vocabulary(characters: str) -> list[str]:
    """bert-base-chinese's shape: specials, punctuation and ASCII (with `##` continuations), then one entry
    per distinct character; whitespace and control characters never reach WordPiece, so they get none."""
    ascii_pieces = list(string.ascii_letters + string.digits)
    vocabulary = [*BERT_SPECIAL_TOKENS, *FULL_WIDTH_PUNCTUATION, *ascii_pieces,
                  *(f"##{piece}" for piece in ascii_pieces)]
    seen = set(vocabulary)
    for character in characters:
        if character not in seen and character.isprintable() and not character.isspace():
            seen.add(character)
            vocabulary.append(character)
    return vocabulary


def uer_style_model(folder: Path, characters: str, seed: int = 0, weights: str = "safetensors", **config) -> Path:
    """The layout of uer/gpt2-chinese-cluecorpussmall: a GPT-2 with a BERT character vocabulary.

    The tokenizer files are the legacy ones UER publishes (vocab.txt, tokenizer_config.json,
    special_tokens_map.json, no tokenizer.json), which transformers 5 can no longer write itself, so that
    loading converts vocab.txt as it does for the real repository. There is no eos or bos token ([CLS] and
    [SEP] mark documents), and config.json keeps GPT2Config's bos/eos id 50256, outside the vocabulary, as
    UER's does. `weights="bin"` writes the pickled pytorch_model.bin of older repositories instead of
    model.safetensors. `config`: GPT2Config fields other than GPT-2's defaults (`tie_word_embeddings=False`).
    """
    if weights not in ("safetensors", "bin"):
        raise ValueError(f"weights must be 'safetensors' or 'bin', not {weights!r}")
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = character_vocabulary(characters)
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "mask_token": "[MASK]"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    tokenizer_config = {"do_lower_case": False, "tokenize_chinese_chars": True, "strip_accents": None, **special,
                        "tokenizer_class": "BertTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")

    model = tiny_gpt2(len(vocabulary), seed, tokenizer_class="BertTokenizer", **config)
    model.save_pretrained(folder)
    (folder / "generation_config.json").unlink()  # UER's repository has none
    if weights == "bin":  # save_pretrained writes only safetensors since transformers 5
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def gpt2_bpe_model(folder: Path, texts: list[str], seed: int = 0, vocab_size: int = 400) -> Path:
    """The layout of openai-community/gpt2: a byte-level BPE tokenizer trained on `texts`, `<|endoftext|>`
    its only special token (bos, eos and unk at once, no pad), and model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[ENDOFTEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = GPT2TokenizerFast(tokenizer_object=backend, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT,
                                  unk_token=ENDOFTEXT)
    tokenizer.save_pretrained(folder)  # tokenizer.json and tokenizer_config.json
    backend.model.save(str(folder))  # vocab.json and merges.txt, which transformers 5 no longer writes

    endoftext = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    tiny_gpt2(len(tokenizer), seed, bos_token_id=endoftext, eos_token_id=endoftext).save_pretrained(folder)
    return folder


def model_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its path relative to it, as `LocalHub.add_model` takes a repository."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


class TouchOnUnpickle:
    """Unpickling runs `Path.touch(marker)`: the harmless stand-in for the code a hostile checkpoint runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def malicious_pickle_model(folder: Path, marker: Path) -> Path:
    """A valid config and tokenizer whose pytorch_model.bin creates `marker` when unpickled.

    Plain `pickle` and `torch.load(weights_only=False)` run it; `torch.load(weights_only=True)` refuses it.
    There is no safetensors file to fall back on.
    """
    uer_style_model(folder, GREETING, weights="bin")
    payload = {"transformer.wte.weight": TouchOnUnpickle(marker)}
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(payload, protocol=2))  # torch.save's protocol
    return folder


def script_model(folder: Path, tokenizer_source: Path, script: str, seed: int = 0) -> Path:
    """A tiny GPT-2 with the tokenizer of `tokenizer_source` and, beside them as stage 3 saves them, the run
    settings (run_config.yaml) of a run whose corpus was converted to `script` (data.chinese_script)."""
    from transformers import AutoTokenizer

    from gpt2zh.config import dump_config
    from gpt2zh.config.schema import Config, DataConfig

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    tokenizer.save_pretrained(folder)
    end = tokenizer.eos_token_id
    tiny_gpt2(len(tokenizer), seed, n_positions=64, bos_token_id=end, eos_token_id=end).save_pretrained(folder)
    dump_config(Config(data=DataConfig(chinese_script=script)), folder / "run_config.yaml")
    return folder

"""The text side of an adopted tokenizer: which id ends a document, and decoding that gives back Chinese as
written.

A BERT-style character vocabulary (UER's Chinese GPT-2 models) decodes with a space between every two
tokens — `你 好 ， 世 界` — because WordPiece joins words with spaces. Chinese is written without them, so
spaces next to a non-ASCII character are dropped; spaces between Latin words stay.
"""

import re

from gpt2zh.errors import UserError

UNBOUNDED = int(1e30)  # transformers' own "no limit" value
WORDPIECE_SPACE = re.compile(r"(?<=[^\x00-\x7f]) | (?=[^\x00-\x7f])")


def is_wordpiece(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and type(backend.decoder).__name__ == "WordPiece"


def decode_text(tokenizer, ids) -> str:
    if not is_wordpiece(tokenizer):
        return tokenizer.decode(ids, skip_special_tokens=True)
    text = WORDPIECE_SPACE.sub("", tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True))
    # a continuation that starts inside a word ("##K" after the prompt's last piece): WordPiece strips "##"
    # only where it joins a piece to the one before, which is not among these ids
    ids = [int(i) for i in ids]
    first = next((i for i in ids if i not in tokenizer.all_special_ids), None)
    starts_inside = first is not None and tokenizer.convert_ids_to_tokens(first).startswith("##")
    return text[2:] if starts_inside and text.startswith("##") else text


def prompt_ids(tokenizer, prompt: str, bos: int) -> list[int]:
    """A prompt as stage 2 encodes a document: the start-of-document id, then the text's own tokens. The
    tokenizer's automatic special tokens would wrap UER prompts in `[CLS] … [SEP]`, and that [SEP] ends
    the document the model is asked to continue."""
    return [bos, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]


def special_token_ids(tokenizer, where: str) -> dict[str, int]:
    """unk/bos/eos/pad ids as stage 2 and 3 use them: documents end with eos (else [SEP], UER's marker), start
    with bos (else [CLS]); with no pad token the end of document pads generations, as GPT-2 does."""
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if end is None:
        raise UserError(f"{where}: the tokenizer has neither an eos nor a [SEP] token to end documents with",
                        "use a tokenizer with an end-of-text token")
    start = next((i for i in (tokenizer.bos_token_id, tokenizer.cls_token_id) if i is not None), end)
    unk = tokenizer.unk_token_id
    return {"unk": end if unk is None else unk, "bos": start, "eos": end,
            "pad": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end}


def load_tokenizer(folder, where: str):
    """AutoTokenizer without the repository's code: a tokenizer that needs it is refused in one line."""
    from transformers import AutoTokenizer

    from gpt2zh.models.source import hide_outside_vocabulary_ids

    hide_outside_vocabulary_ids()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"{where}: its tokenizer does not load without running the repository's own code or "
                        f"lacks files ({str(err).splitlines()[0][:160]})",
                        "use a model whose tokenizer transformers knows (tokenizer.json, or vocab.txt / "
                        "vocab.json + merges.txt)") from None
    # Whole documents are encoded and then cut into blocks or windows by the caller; a model_max_length of 128
    # (UER's) would only warn about "indexing errors" that cannot happen.
    tokenizer.model_max_length = UNBOUNDED
    return tokenizer

"""The special tokens, decided once for every run.

GPT-2 style: one end-of-text token separates documents and serves as both bos and eos; a separate
pad token is never trained on (its label positions are masked). Their ids are fixed by the
SentencePiece trainer and read back from the saved tokenizer by later stages, so no GPT-2 default
such as 50256 can leak into the model config.
"""

UNK = "<unk>"              # required by SentencePiece; byte fallback means it is never produced
END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"

UNK_ID, END_OF_TEXT_ID, PAD_ID = 0, 1, 2
SPECIAL_TOKENS = (UNK, END_OF_TEXT, PAD)  # in id order

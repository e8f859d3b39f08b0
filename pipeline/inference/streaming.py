"""A generation printed as it grows, as the text it decodes to.

Tokens are decoded all together each time one arrives (pipeline/models/text.py:decode_text, so a UER model's
characters come out without the spaces WordPiece puts between them) and only the new end is written. Two
endings can still change when the next token comes, so they wait: a trailing U+FFFD (a byte-level or
byte-fallback piece that is the first part of a multi-byte character) and trailing whitespace (which a
tokenizer's clean-up may join to the next piece, ` ,` -> `,`).
"""

import re
import sys

from transformers.generation.streamers import BaseStreamer

from gpt2zh.models.text import decode_text

UNSETTLED_END = re.compile(r"[\s\ufffd]+$")


class TerminalStreamer(BaseStreamer):
    """For one sequence (batch size 1): `generate()` first puts the prompt, which is skipped."""

    def __init__(self, tokenizer, out=None):
        self.tokenizer, self.out = tokenizer, out or sys.stdout
        self.ids: list[int] = []
        self.printed = ""
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids += value.reshape(-1).tolist()
        self._write(UNSETTLED_END.sub("", self._decoded()))

    def end(self) -> None:
        self._write(self._decoded())

    def _decoded(self) -> str:
        return decode_text(self.tokenizer, self.ids)  # (BM4) no spaces between a UER model's characters

    def _write(self, text: str) -> None:
        if not text.startswith(self.printed):
            # An earlier piece decoded differently once more followed (rare, after the hold-backs above): what
            # is on the terminal stays, and the text continues after it.
            text = self.printed + text[len(self.printed):]
        if len(text) > len(self.printed):
            self.out.write(text[len(self.printed):])
            self.out.flush()
            self.printed = text

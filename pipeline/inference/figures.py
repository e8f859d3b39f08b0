"""What `gpt2zh evaluate` reports per model, and the ranking that compares models across tokenizers.

Loss per token (and perplexity, its exponential) is a figure per token: a tokenizer whose tokens are longer
has fewer, harder tokens to predict, so its loss per token is higher for the same text even when it predicts
that text better. Bits per character divides the same total nats by the characters of the text, which every
tokenizer shares: the only one of these figures that ranks models with different tokenizers (PITFALLS.md BM10).
"""

import math
from dataclasses import dataclass

COMPARISON_NOTE = ("bits per character is the figure that compares models with different tokenizers; loss per "
                   "token and perplexity are not (a tokenizer with longer tokens has fewer, harder tokens)")


@dataclass(frozen=True)
class ModelFigures:
    model: str       # the model's label: its folder, or <repo>@<commit> on the Hub
    reference: str   # as typed
    documents: int
    characters: int  # of the cleaned documents
    tokens: int      # scored: each document's tokens and the separator after it
    nats: float      # summed over the scored tokens
    context: int
    stride: int

    @property
    def loss_per_token(self) -> float:
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss_per_token, 700.0))  # exp overflows a float past ~709

    @property
    def bits_per_char(self) -> float:
        return self.nats / math.log(2) / self.characters

    @property
    def chars_per_token(self) -> float:
        """Of the documents' own tokens, separators not counted: the tokenizer's figure, as stage 2 reports it."""
        return self.characters / max(1, self.tokens - self.documents)

    def as_dict(self) -> dict:
        return {"model": self.model, "reference": self.reference, "bits_per_char": self.bits_per_char,
                "loss_per_token": self.loss_per_token, "perplexity": self.perplexity,
                "chars_per_token": self.chars_per_token, "documents": self.documents,
                "characters": self.characters, "tokens": self.tokens, "nats": self.nats, "context": self.context,
                "stride": self.stride}


def ranked(figures: list[ModelFigures]) -> list[ModelFigures]:
    """Best first by bits per character, never by loss per token across tokenizers (PITFALLS.md BM10)."""
    return sorted(figures, key=lambda f: f.bits_per_char)


def table_lines(figures: list[ModelFigures]) -> list[str]:
    """The side-by-side table, best first."""
    header = ["#", "model", "bits/char", "loss/token", "perplexity", "chars/token", "tokens", "stride"]
    rows = [[str(rank), f.model, f"{f.bits_per_char:.4f}", f"{f.loss_per_token:.4f}", f"{f.perplexity:,.1f}",
             f"{f.chars_per_token:.3f}", f"{f.tokens:,}", f"{f.stride}/{f.context}"]
            for rank, f in enumerate(ranked(figures), 1)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0, 1}  # rank and model read left to right; numbers line up on the right

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  " + "  ".join(padded)

    return [line(header), *map(line, rows)]

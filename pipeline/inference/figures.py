"""What `gpt2zh evaluate` reports per model, and the ranking that compares models across tokenizers.

Loss per token (and perplexity, its exponential) is a figure per token: a tokenizer whose tokens are longer
has fewer, harder tokens to predict, so its loss per token is higher for the same text even when it predicts
that text better. Bits per character divides the same total nats by the characters of the text, which every
tokenizer shares: the only one of these figures that ranks models with different tokenizers (PITFALLS.md BM10).
But a tokenizer that reads characters as its unknown token leaves them in that count while its model predicts
only the easy [UNK] in their place: a model that loses more than LOSSY_SHARE of them is listed apart (NU10).
"""

import math
from dataclasses import dataclass

from gpt2zh.models.coverage import LOSSY_SHARE

COMPARISON_NOTE = ("bits per character is the figure that compares models with different tokenizers; loss per "
                   "token and perplexity are not (a tokenizer with longer tokens has fewer, harder tokens)")
LOST_NOTE = (f"lost: the characters a tokenizer reads as its unknown token ([UNK]). Bits per character still "
             f"divides by them, but the model is scored only on predicting the unknown token in their place, which "
             f"is far easier: a model that loses more than {LOSSY_SHARE:.1%} of the characters is listed apart, "
             f"unranked (PITFALLS.md NU10)")


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
    lost: int = 0                    # characters the tokenizer reads as its unknown token (pipeline/models/coverage.py)
    unknown_token: str | None = None  # its name, where it has one that text can become
    converted: int = 0               # documents converted to the model's Chinese script (pipeline/inference/script.py)

    @property
    def lost_share(self) -> float:
        return self.lost / self.characters if self.characters else 0.0

    @property
    def listed_apart(self) -> str | None:
        """Why the model is not ranked, or None: its bits per character score what its tokenizer lost as [UNK]."""
        if self.lost_share <= LOSSY_SHARE:
            return None
        return (f"its tokenizer reads {self.lost_share:.2%} of the characters as {self.unknown_token} (more than "
                f"{LOSSY_SHARE:.1%}), and its bits per character score them only as that one easy token")

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
                "stride": self.stride, "lost_characters": self.lost, "lost_share": self.lost_share,
                "unknown_token": self.unknown_token, "converted_documents": self.converted,
                "listed_apart": self.listed_apart}


def ranked(figures: list[ModelFigures]) -> list[ModelFigures]:
    """Best first by bits per character, never by loss per token across tokenizers (PITFALLS.md BM10); the
    models whose tokenizers lose too much of the text after every other, never above one (PITFALLS.md NU10)."""
    return sorted(figures, key=lambda f: (f.listed_apart is not None, f.bits_per_char))


def ranks(figures: list[ModelFigures]) -> list[int | None]:
    """The rank of each of ranked(figures), None for a model listed apart."""
    return [None if f.listed_apart else index for index, f in enumerate(ranked(figures), 1)]


def json_rows(figures: list[ModelFigures]) -> list[dict]:
    return [{**f.as_dict(), "rank": rank} for f, rank in zip(ranked(figures), ranks(figures), strict=True)]


def table_lines(figures: list[ModelFigures]) -> list[str]:
    """The side-by-side table, best first; models listed apart after the ranked ones, `-` for a rank, each with
    its reason below the table."""
    header = ["#", "model", "bits/char", "loss/token", "perplexity", "chars/token", "tokens", "stride", "lost"]
    rows = [[str(rank or "-"), f.model, f"{f.bits_per_char:.4f}", f"{f.loss_per_token:.4f}", f"{f.perplexity:,.1f}",
             f"{f.chars_per_token:.3f}", f"{f.tokens:,}", f"{f.stride}/{f.context}", f"{f.lost_share:.3%}"]
            for rank, f in zip(ranks(figures), ranked(figures), strict=True)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0, 1}  # rank and model read left to right; numbers line up on the right

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  " + "  ".join(padded)

    apart = [f"  listed apart, unranked: {f.model}: {f.listed_apart}" for f in ranked(figures) if f.listed_apart]
    return [line(header), *map(line, rows), *apart]

"""Reading corpora: sources, encodings, formats, cleaning and the held-out split."""

from gpt2zh.corpus.reader import CorpusReader, CorpusStats, Document
from gpt2zh.corpus.sources import Source, sources_for

__all__ = ["CorpusReader", "CorpusStats", "Document", "Source", "sources_for"]

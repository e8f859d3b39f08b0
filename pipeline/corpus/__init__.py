"""Reading corpora: sources, encodings, formats, cleaning and the held-out split."""

from pipeline.corpus.reader import CorpusReader, CorpusStats, Document
from pipeline.corpus.sources import Source, sources_for

__all__ = ["CorpusReader", "CorpusStats", "Document", "Source", "sources_for"]

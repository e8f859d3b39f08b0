"""Stage 1's reading of the corpus, shared by training a tokenizer and adopting a base model's: a bounded sample
of sentences to train on, held-out documents to measure on, and the report rows that say what was read."""

from gpt2zh.config.schema import TokenizerConfig
from gpt2zh.console import progress
from gpt2zh.corpus import CorpusReader
from gpt2zh.report import StageReport, human_bytes
from gpt2zh.tokenizer.sampling import SentenceReservoir, split_sentences

HELD_OUT_CHARS = 2_000_000  # held-out text kept for the quality figures and the verification
# Whole training documents kept for the quality figures when the corpus has no held-out documents.
SPARE_DOCUMENT_CHARS = 200_000


class CorpusSample:
    """The sentences stage 1 trains on, and the documents it measures the tokenizer on."""

    def __init__(self, cfg: TokenizerConfig):
        self.reservoir = SentenceReservoir(cfg.input_sentence_size, cfg.seed)
        self.held_out: list[str] = []
        self.held_out_chars = 0
        self.training_documents: list[str] = []
        self.training_chars = 0
        self.sentences_cut = 0
        self.target = int(cfg.read_factor * cfg.input_sentence_size)


def read_sample(reader: CorpusReader, cfg: TokenizerConfig) -> CorpusSample:
    sample = CorpusSample(cfg)
    # Progress in bytes: reading stops at the sentence target, usually well before the end of a big corpus.
    with progress(reader.stats.bytes_total, "B", "reading corpus sample", scale=True) as bar:
        documents = reader.sampled_documents(cfg.seed, on_block=bar.update)
        try:
            for document in documents:
                if document.validation:
                    if sample.held_out_chars < HELD_OUT_CHARS:
                        sample.held_out.append(document.text)
                        sample.held_out_chars += len(document.text)
                    continue
                if sample.training_chars < SPARE_DOCUMENT_CHARS:
                    sample.training_documents.append(document.text)
                    sample.training_chars += len(document.text)
                sentences, cut = split_sentences(document.text, cfg.max_sentence_bytes)
                sample.sentences_cut += cut
                for sentence in sentences:
                    sample.reservoir.add(sentence)
                if sample.reservoir.seen >= sample.target:
                    break
        finally:
            documents.close()
    return sample


def report_sample_rows(report: StageReport, corpus: str, reader: CorpusReader, sample: CorpusSample,
                       trains: bool = True) -> None:
    stats = reader.stats
    bounded = "every block" if stats.blocks_read == stats.blocks_total else \
        f"{stats.blocks_read}/{stats.blocks_total} random 1 MiB blocks (bounded sample)"
    report.row("corpus", corpus)
    report.row("read", f"{human_bytes(stats.bytes_read)} of {human_bytes(stats.bytes_total)}, {bounded}")
    if layout := stats.layout_line():
        report.row("layout", layout)
    report.row("documents", stats.documents_line("held out"))
    report.row("cleaning", stats.cleaning_line())
    if stats.detected_encodings or stats.empty_files:
        report.row("attention", f"{len(stats.detected_encodings)} file(s) decoded from a detected encoding, "
                                f"{len(stats.empty_files)} empty file(s) skipped (see warnings above)")
    if trains:  # an adopted tokenizer is measured on the held-out documents, not trained
        report.row("sample", f"{len(sample.reservoir.items):,} sentences for training ({sample.reservoir.seen:,} "
                             f"seen, {sample.sentences_cut:,} over-long sentences split)")

"""Writing packed blocks as a dataset that `datasets.load_from_disk` opens, without a second copy.

`save_to_disk` needs the whole dataset first and rewrites every byte; a corpus larger than memory
cannot go that way. We stream blocks into Arrow files in the same layout it produces (per split:
`data-NNNNN.arrow`, `state.json`, `dataset_info.json`; `dataset_dict.json` at the root). The
features are written as datasets serialises them (a test compares them with datasets' own and loads
the result with load_from_disk): importing datasets would cost stage 2 half a second of start-up.

Token ids are stored in the smallest unsigned type that holds the vocabulary: uint16 below 65,536
ids (half of int32's bytes, a quarter of int64's), uint32 above — never silently truncated the way
nanoGPT / llm.c's hard-wired uint16 would be for a bigger vocabulary. The Trainer's collator widens
them to int64 per batch.
"""

import json
from pathlib import Path

import numpy as np

MAX_FILE_BYTES = 500 * 1000 * 1000  # datasets' own default shard size for save_to_disk
COLUMN = "input_ids"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def block_features(block_size: int, dtype: np.dtype) -> dict:
    """datasets' `Features({COLUMN: List(Value(dtype), length=block_size)}).to_dict()`."""
    return {COLUMN: {"feature": {"dtype": dtype.name, "_type": "Value"}, "length": block_size, "_type": "List"}}


def block_schema(block_size: int, dtype: np.dtype):
    """The Arrow schema datasets gives those features (the features ride along as schema metadata)."""
    import pyarrow as pa

    metadata = {"huggingface": json.dumps({"info": {"features": block_features(block_size, dtype)}})}
    return pa.schema([pa.field(COLUMN, pa.list_(pa.from_numpy_dtype(dtype), block_size))], metadata=metadata)


class SplitWriter:
    """Streams (n, block_size) arrays of one split into Arrow files, rolling over at MAX_FILE_BYTES."""

    def __init__(self, folder: Path, split: str, block_size: int, dtype: np.dtype, fingerprint: str):
        self.folder, self.split, self.block_size, self.dtype = folder, split, block_size, dtype
        self.fingerprint = fingerprint
        self.features = block_features(block_size, dtype)
        self.schema = block_schema(block_size, dtype)
        folder.mkdir(parents=True)
        self.files: list[str] = []
        self.rows = 0
        self._writer = None
        self._sink = None
        self._file_bytes = 0

    def _open_next(self) -> None:
        import pyarrow as pa

        self._close_file()
        name = f"data-{len(self.files):05d}.arrow"
        self.files.append(name)
        self._sink = pa.OSFile(str(self.folder / name), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._file_bytes = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def write(self, blocks: np.ndarray) -> None:
        import pyarrow as pa

        if self._writer is None or self._file_bytes >= MAX_FILE_BYTES:
            self._open_next()
        ids = np.ascontiguousarray(blocks, dtype=self.dtype).reshape(-1)
        # From the buffer: pa.array(ndarray) would import pandas (0.15 s) to check for a DataFrame.
        flat = pa.Array.from_buffers(pa.from_numpy_dtype(self.dtype), len(ids), [None, pa.py_buffer(ids)])
        column = pa.FixedSizeListArray.from_arrays(flat, self.block_size)
        self._writer.write_batch(pa.record_batch([column], schema=self.schema))
        self.rows += len(blocks)
        self._file_bytes += blocks.size * self.dtype.itemsize

    def close(self) -> None:
        if not self.files:
            self._open_next()  # an empty split is still a valid, loadable split
        self._close_file()
        info = {"description": "", "citation": "", "homepage": "", "license": "", "features": self.features}
        (self.folder / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        state = {"_data_files": [{"filename": name} for name in self.files], "_fingerprint": self.fingerprint,
                 "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                 "_output_all_columns": False, "_split": self.split}
        (self.folder / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def write_dataset_dict(folder: Path, splits: list[str]) -> None:
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": splits}) + "\n", encoding="utf-8")

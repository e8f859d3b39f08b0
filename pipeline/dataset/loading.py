"""Opening stage 2's output: one dataset, or every shard of a multi-machine build as one dataset."""

from pathlib import Path

from gpt2zh.dataset.shards import shard_folders
from gpt2zh.errors import UserError
from gpt2zh.manifests import DatasetManifest

BUILD_FIX = "run `gpt2zh tokenize` with the same --run-dir first"


def dataset_parts(dataset_dir: Path) -> list[tuple[Path, DatasetManifest]]:
    """(folder, manifest) of every complete part; raises UserError naming what is missing."""
    manifest = DatasetManifest.read(dataset_dir)
    if manifest is not None:
        return [(dataset_dir, manifest)]
    shards = shard_folders(dataset_dir) if dataset_dir.is_dir() else {}
    if not shards:
        raise UserError(f"no complete dataset in {dataset_dir}", BUILD_FIX)
    counts = {count for count, _ in shards.values()}
    if len(counts) != 1:
        raise UserError(f"{dataset_dir} mixes shards of different builds (of {sorted(counts)} shards)",
                        "remove the stale shard folders and rebuild them")
    count = counts.pop()
    parts = {index: (folder, DatasetManifest.read(folder)) for index, (_, folder) in shards.items()}
    missing = [i for i in range(count) if i not in parts or parts[i][1] is None]
    if missing:
        listed = ", ".join(map(str, missing))
        raise UserError(f"{dataset_dir}: shard(s) {listed} of {count} are missing or incomplete",
                        f"run `gpt2zh tokenize --data-num-shards {count} --data-shard-index I` for each missing I")
    tokenizers = {manifest.tokenizer_fingerprint for _, manifest in parts.values()}
    if len(tokenizers) != 1:
        raise UserError(f"{dataset_dir}: shards were built with different tokenizers", "rebuild every shard")
    return [parts[i] for i in range(count)]


def load_blocks(dataset_dir: Path):
    """A DatasetDict (train, validation) of packed blocks, shards concatenated in index order."""
    from datasets import DatasetDict, concatenate_datasets, load_from_disk

    parts = dataset_parts(dataset_dir)
    if len(parts) == 1:
        return load_from_disk(str(parts[0][0]))
    loaded = [load_from_disk(str(folder)) for folder, _ in parts]
    return DatasetDict({split: concatenate_datasets([part[split] for part in loaded]) for split in loaded[0]})


def train_blocks(folders: list[Path]) -> int:
    """Training blocks over every part, from stage 2's stats (the epochs a number of steps means)."""
    import json

    return sum(json.loads((folder / "stats.json").read_text(encoding="utf-8"))["splits"]["train"]["blocks"]
               for folder in folders)

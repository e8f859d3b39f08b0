"""Stage 2 across machines: shard i of N gets a contiguous range of the corpus' 1 MiB blocks.

Every job resolves the same file list, so the ranges are disjoint and cover the corpus exactly; a
single huge file is split as well as many small ones. Shard outputs live side by side in
<run-dir>/dataset/shard-IIIII-of-NNNNN/, and the training stage reads them as one dataset.
"""

import re
from pathlib import Path
from typing import TypeVar

Item = TypeVar("Item")
SHARD_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})$")


def shard_folder_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


def items_for_shard(items: list[Item], index: int, count: int) -> list[Item]:
    start, end = len(items) * index // count, len(items) * (index + 1) // count
    return items[start:end]


def shard_folders(dataset_dir: Path) -> dict[int, tuple[int, Path]]:
    """{index: (count, folder)} for the shard folders present (complete or not)."""
    found = {}
    for folder in sorted(dataset_dir.glob("shard-*-of-*")):
        match = SHARD_NAME.match(folder.name)
        if match and folder.is_dir():
            found[int(match.group(1))] = (int(match.group(2)), folder)
    return found

"""Packing, storage and shard arithmetic, block by block."""

import json

import numpy as np
import pytest
from datasets import load_from_disk

from gpt2zh.dataset.packing import BlockPacker
from gpt2zh.dataset.shards import items_for_shard
from gpt2zh.dataset.store import SplitWriter, block_features, block_schema, token_dtype, write_dataset_dict


def pack(chunks: list[np.ndarray], block_size: int, flush_tokens: int) -> tuple[list[np.ndarray], BlockPacker]:
    written: list[np.ndarray] = []
    packer = BlockPacker(block_size, written.append, flush_tokens=flush_tokens)
    for chunk in chunks:
        packer.add(chunk)
    packer.close()
    return written, packer


@pytest.mark.parametrize("seed", range(20))
def test_blocks_are_exact_remainders_carry_and_only_the_final_tail_is_dropped(seed):
    rng = np.random.default_rng(seed)
    block_size = int(rng.integers(2, 64))
    chunks = [rng.integers(0, 60000, int(rng.integers(0, 300)), dtype=np.uint16)
              for _ in range(int(rng.integers(1, 40)))]
    written, packer = pack(chunks, block_size, flush_tokens=int(rng.integers(1, 500)))
    stream = np.concatenate(chunks) if chunks else np.empty(0, np.uint16)
    blocks = np.concatenate(written) if written else np.empty((0, block_size), np.uint16)
    assert all(batch.shape[1] == block_size for batch in written)
    assert packer.tokens_in == len(stream) == len(blocks) * block_size + packer.tail
    assert 0 <= packer.tail < block_size
    assert np.array_equal(blocks.reshape(-1), stream[: len(blocks) * block_size])  # nothing reordered or lost


def test_remainder_of_a_batch_is_not_dropped_like_group_texts():
    # run_clm's group_texts would keep 1 block per 3-token batch of size 2 and drop 3 of 6 tokens.
    written, packer = pack([np.arange(3), np.arange(3, 6)], block_size=2, flush_tokens=1)
    assert np.array_equal(np.concatenate(written), [[0, 1], [2, 3], [4, 5]]) and packer.tail == 0


def test_vocabulary_size_picks_the_smallest_type_that_holds_every_id():
    assert token_dtype(8000) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(151_936) == np.uint32


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_written_splits_open_with_load_from_disk(tmp_path, dtype):
    rng = np.random.default_rng(0)
    top = 70_000 if dtype == np.uint32 else 60_000
    blocks = rng.integers(0, top, (37, 16)).astype(dtype)
    for split, rows in (("train", blocks[:30]), ("validation", blocks[30:])):
        writer = SplitWriter(tmp_path / split, split, 16, np.dtype(dtype), "fp")
        writer.write(rows[:10])
        writer.write(rows[10:])
        writer.close()
    write_dataset_dict(tmp_path, ["train", "validation"])
    loaded = load_from_disk(str(tmp_path))
    assert loaded["train"].features["input_ids"].feature.dtype == np.dtype(dtype).name
    assert np.array_equal(np.asarray(loaded["train"].with_format("numpy")[:]["input_ids"]), blocks[:30])
    assert np.array_equal(np.asarray(loaded["validation"].with_format("numpy")[:]["input_ids"]), blocks[30:])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_hand_written_features_and_schema_are_exactly_what_datasets_makes(tmp_path, dtype):
    from datasets import DatasetInfo, Features, List, Value

    features = Features({"input_ids": List(Value(np.dtype(dtype).name), length=64)})
    assert block_features(64, np.dtype(dtype)) == features.to_dict()
    assert block_schema(64, np.dtype(dtype)).equals(features.arrow_schema, check_metadata=True)
    SplitWriter(tmp_path / "ours", "train", 64, np.dtype(dtype), "fp").close()
    DatasetInfo(features=features).write_to_directory(str(tmp_path))
    ours = json.loads((tmp_path / "ours" / "dataset_info.json").read_text())
    assert ours == json.loads((tmp_path / "dataset_info.json").read_text())


def test_an_empty_split_is_still_loadable(tmp_path):
    SplitWriter(tmp_path / "validation", "validation", 8, np.dtype(np.uint16), "fp").close()
    (tmp_path / "validation").rename(tmp_path / "v")
    assert load_from_disk(str(tmp_path / "v")).num_rows == 0


@pytest.mark.parametrize("count", [1, 2, 3, 7, 20])
def test_shards_are_disjoint_contiguous_and_cover_everything(count):
    items = list(range(19))
    shards = [items_for_shard(items, i, count) for i in range(count)]
    assert sum(shards, []) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1

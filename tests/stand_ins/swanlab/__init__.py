"""A stand-in for the SwanLab client, for tests only: SwanLab is not installed here and its service cannot
be reached. transformers' own SwanLabCallback drives it exactly as it drives the real package (`init`,
`config.update`, `log`); every call is appended as one JSON line to $SWANLAB_STAND_IN_RECORD, so a test can
read what a real tracker would have received. Put tests/stand_ins on PYTHONPATH to use it."""

import json
import os

_run = None


def _record(call: str, **values) -> None:
    with open(os.environ["SWANLAB_STAND_IN_RECORD"], "a", encoding="utf-8") as record:
        record.write(json.dumps({"call": call, **values}, default=str) + "\n")


class _Config(dict):
    def update(self, values=(), **more):
        _record("config.update", values=dict(values, **more))
        super().update(values, **more)


config = _Config()


def get_run():
    return _run


def init(**kwargs):
    global _run
    _record("init", kwargs=kwargs)
    _run = object()
    return _run


def log(data: dict, step: int | None = None) -> None:
    _record("log", data=data, step=step)

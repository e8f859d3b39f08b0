"""Integer counters that add up across blocks (and, in stage 2, across worker processes)."""

from dataclasses import fields


class Tally:
    """Mixin for dataclasses of int counters; non-int fields (bookkeeping) are left out."""

    def _counters(self) -> list[str]:
        return [f.name for f in fields(self) if isinstance(getattr(self, f.name), int)]

    def add(self, other: "Tally") -> None:
        for name in self._counters():
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self._counters()}

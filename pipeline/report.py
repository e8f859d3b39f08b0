"""The summary every stage ends with: what it read, what it wrote, how long, key figures."""

import time


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 90:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StageReport:
    def __init__(self, stage: str):
        self.stage = stage
        self.started = time.monotonic()
        self.rows: list[tuple[str, str]] = []

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def row(self, label: str, text: str) -> None:
        self.rows.append((label, text))

    def render(self, status: str = "done") -> str:
        title = f"── {self.stage}: {status} in {human_duration(self.elapsed)} "
        lines = [title + "─" * max(0, 72 - len(title))]
        width = max((len(label) for label, _ in self.rows), default=0)
        lines += [f"  {label:<{width}}  {text}" for label, text in self.rows]
        return "\n".join(lines)

    def print(self, status: str = "done") -> None:
        print(self.render(status), flush=True)


NEAR_BASELINE_NATS = 0.1  # closer than this, the margin is within evaluation noise of frequencies alone


def context_verdict(loss: float, unigram: float) -> str:
    """The final validation loss against the unigram baseline, in words."""
    margin = unigram - loss
    where = (f"loss {abs(margin):.2f} nats {'below' if margin >= 0 else 'above'} the unigram baseline {unigram:.2f} "
             "(what a model that knows only token frequencies scores)")
    if margin >= NEAR_BASELINE_NATS:
        return f"{where}: the model uses context"
    return f"{where}: the model has not yet learned more than those frequencies"

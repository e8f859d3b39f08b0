"""What users see while a stage runs: one-line notices, warnings and progress on stderr; what a command
reports (a stage's plan and its summary, `gpt2zh plan`'s lines) on stdout. Progress is a tqdm bar on a
terminal and a plain line now and then in a log file (PITFALLS.md NU13)."""

import logging
import sys
from time import monotonic

LOGGER_NAME = "gpt2zh"


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


def setup_logging(quiet: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    return logger


def quiet() -> bool:
    """`--quiet` (cli.main sets the gpt2zh logger to WARNING, as it does on ranks other than 0): no progress
    bars, ours or the Hugging Face libraries', only warnings and the final summary."""
    return logging.getLogger(LOGGER_NAME).level > logging.INFO


def report_line(line: str) -> None:
    """A line of what a command reports, on stdout beside the stage summaries (StageReport.print); --quiet
    keeps only the summaries."""
    if not quiet():
        print(line, flush=True)


# In a log file: a line for each further tenth of the work, at most one per LINE_GAP_SECONDS, and one at
# least every LINE_EVERY_SECONDS while it runs. tqdm there redraws one line with carriage returns: 33 KB
# of a single line after a stage-3 run.
LINE_SHARE = 0.1
LINE_GAP_SECONDS = 5.0
LINE_EVERY_SECONDS = 60.0


class LineProgress:
    """tqdm's update/set_postfix/close, written as plain lines (PITFALLS.md NU13)."""

    def __init__(self, total: float | None, unit: str, description: str, scale: bool = False, initial: int = 0,
                 stream=None):
        self.total, self.unit, self.description, self.scale = total, unit, description, scale
        self.n = self.initial = self.printed_n = initial
        self.started = self.printed_at = monotonic()
        self.postfix, self.stream, self.closed = "", stream or sys.stderr, False

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **more) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in {**(values or {}), **more}.items())

    def update(self, n: float = 1) -> None:
        self.n += n
        now = monotonic()
        share_done = self.total and (self.n - self.printed_n) >= LINE_SHARE * self.total
        if (share_done and now - self.printed_at >= LINE_GAP_SECONDS) or now - self.printed_at >= LINE_EVERY_SECONDS:
            self._print(now)

    def close(self) -> None:
        if not self.closed and self.n != self.printed_n:
            self._print(monotonic())
        self.closed = True

    def _amount(self, value: float, unit: str, digits: str = ",.0f") -> str:
        from tqdm import tqdm

        return f"{tqdm.format_sizeof(value)}{unit}" if self.scale else f"{value:{digits}} {unit}".rstrip()

    def line(self, now: float) -> str:
        from tqdm import tqdm

        elapsed = now - self.started
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        speed = self._amount(rate, f"{self.unit}/s", ".3g")
        done = self._amount(self.n, self.unit) if not self.total else \
            f"{100 * self.n / self.total:.0f} % ({self._amount(self.n, '')} of {self._amount(self.total, self.unit)})"
        left = (f", about {tqdm.format_interval((self.total - self.n) / rate)} left"
                if self.total and rate > 0 and self.n < self.total else "")
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.description}: {done}, {tqdm.format_interval(elapsed)} elapsed{left}, {speed}{postfix}"

    def _print(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self.printed_n, self.printed_at = self.n, now


def progress(total: float | None, unit: str, description: str, scale: bool = False, initial: int = 0):
    """A tqdm bar on a terminal's stderr; elsewhere (a log file, CI) plain lines now and then."""
    if not sys.stderr.isatty() and not quiet():
        return LineProgress(total, unit, description, scale, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=description, unit_scale=scale, initial=initial, file=sys.stderr,
                mininterval=0.2, dynamic_ncols=True, disable=quiet())


def close_progress_bars() -> None:
    """Finish any bar an error interrupted, so the error starts on a line of its own."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        bar.close()

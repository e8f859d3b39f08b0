"""What users see while a stage runs: one-line notices and warnings on stderr, tqdm progress bars."""

import logging
import sys

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


def progress(total: float | None, unit: str, description: str, scale: bool = False):
    """A tqdm bar on stderr; on a non-terminal (CI logs) it refreshes rarely instead of flooding."""
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, unit=unit, desc=description, unit_scale=scale, file=sys.stderr,
                mininterval=0.2 if interactive else 5.0, dynamic_ncols=True,
                disable=quiet())


def close_progress_bars() -> None:
    """Finish any bar an error interrupted, so the error starts on a line of its own."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        bar.close()

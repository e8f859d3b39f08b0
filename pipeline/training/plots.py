"""logs/loss.png: training and validation loss against the unigram baseline, redrawn at each evaluation."""

from pathlib import Path


def plot_losses(rows: list[dict], unigram: float, path: Path, title: str, notes: list[str] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=110)
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", color="#4C72B0", linewidth=1.2)
    if evals:
        axes.plot(*zip(*evals, strict=True), label="validation loss", color="#DD8452", marker="o", markersize=3)
        first, last = evals[0], evals[-1]
        axes.annotate(f"{first[1]:.2f}", first, textcoords="offset points", xytext=(4, 4), fontsize=8)
        axes.annotate(f"{last[1]:.2f}", last, textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.axhline(unigram, color="#55A868", linestyle="--", linewidth=1,
                 label=f"unigram baseline {unigram:.2f} (no context)")
    for i, note in enumerate(notes):
        axes.text(0.99, 0.97 - 0.06 * i, note, transform=axes.transAxes, ha="right", va="top", fontsize=8)
    finish_loss_figure(figure, axes, title, path)


def finish_loss_figure(figure, axes, title: str, path: Path) -> None:
    """Labels, grid and legend of a loss-against-step plot; saved atomically (a reader never sees half a PNG)."""
    import matplotlib.pyplot as plt

    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    temporary.replace(path)

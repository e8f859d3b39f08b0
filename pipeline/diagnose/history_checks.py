"""Reading logs/training_history.csv: a loss that does not fall, spikes, non-finite values, overfitting,
and a learning rate that looks too high or too low. Also draws logs/diagnosis.png with the findings marked."""

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from gpt2zh.diagnose.findings import FAIL, OK, WARN, Finding

SPIKE_WINDOW = 10


@dataclass
class Series:
    train: list[tuple[int, float]]              # (step, training loss), finite or not
    evals: list[tuple[int, float]]              # (step, validation loss)
    grad_norms: list[tuple[int, float]]
    skipped: int
    unigram: float | None
    skipped_at: list[int] = field(default_factory=list)  # logged steps whose window had a step skipped
    spikes: list[int] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)


def _value(row: dict, key: str) -> float | None:
    value = row.get(key)
    return float(value) if value is not None else None


def load_series(rows: list[dict]) -> Series:
    def pairs(key):
        return [(int(r["step"]), _value(r, key)) for r in rows if _value(r, key) is not None]

    unigram = next((_value(r, "unigram_entropy") for r in reversed(rows) if _value(r, "unigram_entropy")), None)
    skipped = max((int(r.get("skipped_steps") or 0) for r in rows), default=0)
    skipped_at, count = [], 0
    for row in rows:
        if int(row.get("skipped_steps") or 0) > count:
            count = int(row["skipped_steps"])
            skipped_at.append(int(row["step"]))
    # A logged loss whose window held a skipped step is the Trainer's stand-in for NaN, not a measurement.
    train = [(step, math.nan if step in skipped_at else value) for step, value in pairs("loss")]
    return Series(train, pairs("eval_loss"), pairs("grad_norm"), skipped, unigram, skipped_at)


def find_spikes(train: list[tuple[int, float]]) -> list[int]:
    """Steps whose loss jumps well above the median of the steps before (0.5 nats and 4 median deviations)."""
    spikes = []
    finite = [(s, v) for s, v in train if math.isfinite(v)]
    for i in range(3, len(finite)):
        window = [v for _, v in finite[max(0, i - SPIKE_WINDOW): i]]
        centre = median(window)
        spread = median(abs(v - centre) for v in window)
        if finite[i][1] - centre > max(0.5, 4 * spread):
            spikes.append(finite[i][0])
    return spikes


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def history_findings(series: Series, max_grad_norm: float, learning_rate: float,
                     max_nonfinite_steps: int = 10) -> list[Finding]:
    findings = []
    if len(series.train) < 4:
        return [Finding("history", WARN, "too little history to judge", f"{len(series.train)} logged training steps",
                        "train longer or log more often (--training-logging-steps)", "D9")]
    series.nonfinite = [s for s, v in series.train if not math.isfinite(v)]
    if series.nonfinite or series.skipped:
        logged = [s for s in series.nonfinite if s not in series.skipped_at]
        stopped = series.skipped >= max_nonfinite_steps
        evidence = f"{series.skipped} step(s) skipped by the NaN guard"
        evidence += f" (in the windows logged at steps {', '.join(map(str, series.skipped_at[:8]))})" \
            if series.skipped_at else ""
        evidence += f"; non-finite logged losses at steps {', '.join(map(str, logged[:8]))}" if logged else ""
        evidence += "; training was stopped by the guard" if stopped else ""
        findings.append(Finding("history", FAIL if logged or stopped else WARN, "non-finite loss during training",
                                evidence, "lower the learning rate, prefer bf16 to fp16, check the data", "D9"))
    finite = [(s, v) for s, v in series.train if math.isfinite(v)]
    tenth = max(2, len(finite) // 10)
    start, end = _mean([v for _, v in finite[:tenth]]), _mean([v for _, v in finite[-tenth:]])
    lowest = min(v for _, v in finite)
    drop = (start - end) / start if start else 0.0
    findings.append(Finding("history", FAIL if drop < 0.02 else OK,
                            "training loss is not decreasing" if drop < 0.02 else "training loss decreases",
                            f"mean of the first {tenth} logged losses {start:.3f}, of the last {tenth} {end:.3f} "
                            f"({drop:+.1%} drop), lowest {lowest:.3f}",
                            "run `gpt2zh diagnose` checks above: learning rate, data, label alignment" if drop < 0.02
                            else "", "D9"))
    series.spikes = find_spikes(series.train)
    if series.spikes:
        findings.append(Finding("history", WARN, "loss spikes", f"{len(series.spikes)} spike(s) at steps "
                                f"{', '.join(map(str, series.spikes[:10]))}",
                                "lower the learning rate or lengthen warmup; check the data near those steps", "D9"))

    clipped = [v for _, v in series.grad_norms if math.isfinite(v)]
    diverged = end - lowest > 0.5
    peak_step, peak = max(finite, key=lambda pair: pair[1])
    blew_up = peak > finite[0][1] + 0.5 and peak_step != finite[0][0]  # worse than the untrained model
    high_norm = max_grad_norm > 0 and clipped and median(clipped) > 10 * max_grad_norm
    if diverged or blew_up or len(series.spikes) >= 3 or high_norm:  # NaNs alone have their own finding
        evidence = []
        if blew_up:
            evidence.append(f"the loss rose from {finite[0][1]:.2f} to {peak:.2f} at step {peak_step}, above the "
                            "untrained model's")
        if diverged:
            evidence.append(f"the loss rose {end - lowest:.2f} nats above its lowest point")
        if len(series.spikes) >= 3:
            evidence.append(f"{len(series.spikes)} spikes")
        if high_norm:
            evidence.append(f"median gradient norm {median(clipped):.3g}, {median(clipped) / max_grad_norm:.0f}x the "
                            f"clipping norm")
        findings.append(Finding("history", FAIL, "learning rate looks too high",
                                f"peak {learning_rate:g}: " + "; ".join(evidence),
                                f"lower --optimization-learning-rate (try {learning_rate / 10:g}) and keep warmup",
                                "D11"))
    elif 0.02 <= drop < 0.10 and not series.spikes:
        last_quarter = finite[-max(2, len(finite) // 4):]
        still_falling = last_quarter[-1][1] < last_quarter[0][1]
        if still_falling:
            findings.append(Finding("history", WARN, "learning rate may be too low",
                                    f"peak {learning_rate:g}: only {drop:.1%} drop, still falling steadily at the end",
                                    "raise --optimization-learning-rate (GPT-2 small: 6e-4) or train longer", "D11"))

    if series.evals:
        findings += _generalisation(series, finite)
    return findings


def _generalisation(series: Series, finite: list[tuple[int, float]]) -> list[Finding]:
    findings = []
    final_step, final_eval = series.evals[-1]
    near = [v for s, v in finite if abs(s - final_step) <= max(1, final_step // 10)] or [finite[-1][1]]
    train_loss = _mean(near)
    gap = final_eval - train_loss
    best_step, best_eval = min(series.evals, key=lambda pair: pair[1])
    rising = len(series.evals) >= 3 and final_eval > best_eval + 0.05 and best_step != final_step
    evidence = (f"validation {final_eval:.3f} vs training {train_loss:.3f} at step {final_step} (gap {gap:+.3f}); "
                f"best validation {best_eval:.3f} at step {best_step}")
    if rising and gap > 0.1:
        findings.append(Finding("history", WARN, "overfitting: validation loss rising while training falls", evidence,
                                f"use the checkpoint near step {best_step}, add data, or raise dropout / weight decay",
                                "D10"))
    else:
        findings.append(Finding("history", OK, "no overfitting", evidence))
    if series.unigram is not None and math.isfinite(final_eval) and final_eval > series.unigram:
        findings.append(Finding("history", WARN, "not yet better than the unigram baseline",
                                f"validation {final_eval:.3f} > unigram {series.unigram:.3f} (the loss of a model "
                                "ignoring context)", "train longer; if the loss stalls, see the learning-rate findings",
                                "D9"))
    return findings


def plot_diagnosis(series: Series, findings: list[Finding], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpt2zh.training.plots import finish_loss_figure

    figure, axes = plt.subplots(figsize=(9, 5), dpi=110)
    finite = [(s, v) for s, v in series.train if math.isfinite(v)]
    if finite:
        axes.plot(*zip(*finite, strict=True), color="#4C72B0", linewidth=1.1, label="training loss")
    if series.evals:
        axes.plot(*zip(*series.evals, strict=True), color="#DD8452", marker="o", markersize=3, label="validation loss")
    if series.unigram is not None:
        axes.axhline(series.unigram, color="#55A868", linestyle="--", linewidth=1, label="unigram baseline")
    losses = dict(finite)
    spikes = [(s, losses[s]) for s in series.spikes if s in losses]
    if spikes:
        axes.scatter(*zip(*spikes, strict=True), color="#C44E52", marker="x", s=50, zorder=3, label="spike")
    for i, step in enumerate(series.nonfinite):
        axes.axvline(step, color="#C44E52", alpha=0.4, linewidth=1, label="non-finite loss" if i == 0 else None)
    if series.evals:
        best = min(series.evals, key=lambda pair: pair[1])
        axes.annotate(f"best validation {best[1]:.2f}", best, textcoords="offset points", xytext=(-90, -14), fontsize=8)
    problems = [f for f in findings if f.status != OK]
    for i, finding in enumerate(problems[:6]):
        axes.text(0.99, 0.97 - 0.055 * i, f"{finding.status.upper()}: {finding.title}", transform=axes.transAxes,
                  ha="right", va="top", fontsize=8, color="#C44E52" if finding.status == FAIL else "#8C6D00")
    finish_loss_figure(figure, axes, "gpt2zh diagnose: training history", path)

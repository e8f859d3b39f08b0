"""`gpt2zh bench`: what this machine achieves with the plan stage 3 would make, measured, before a long run.

Each variant (`--compare KEY=V1,V2`, or the one plan) trains in a child process of its own, so one that
runs out of memory, misses a kernel or is stopped leaves one line in its row and the others still run, and
each process's peak memory is its own. Ctrl-C stops the running variant (its row says so) and the bench goes
on with the next; a second Ctrl-C stops the bench and prints what was measured.
"""

import argparse
import dataclasses
import difflib
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

from gpt2zh.config import GROUPS
from gpt2zh.config.options import flag_name
from gpt2zh.config.values import BadValue, parse_text
from gpt2zh.errors import UserError

log = logging.getLogger("gpt2zh")
RESULT_FLAG = "--bench-result"
MEASURED_GROUPS = ("data", "tokenizer", "model", "training", "optimization")
COLUMNS = ("variant", "tokens/s", "MFU", "step s", "peak memory GiB", "estimate GiB", "final loss", "plan")


def bench_options(parser) -> None:
    parser.add_argument("--steps", type=int, default=10, metavar="N", help="optimizer steps measured (default 10)")
    parser.add_argument("--warmup", type=int, default=3, metavar="N",
                        help="optimizer steps before the measurement: allocation, compiling, loader start-up "
                             "(default 3)")
    parser.add_argument("--compare", action="append", default=[], metavar="KEY=V1,V2",
                        help="run each value of a config key in a process of its own and print one table, e.g. "
                             "training.chunked_loss=true,false or model.attention=sdpa,eager (repeat for every "
                             "combination)")
    parser.add_argument("--json", action="store_true", help="one JSON object for scripts")
    parser.add_argument(RESULT_FLAG, metavar="PATH", help=argparse.SUPPRESS)  # the child's answer to the parent


@functools.cache
def _config_keys() -> dict[str, tuple]:
    """dotted key -> (group, field, type), from the same groups the command-line options are made of."""
    keys = {}
    for group, cls in GROUPS.items():
        hints = typing.get_type_hints(cls)
        keys.update({f"{group}.{f.name}": (group, f.name, hints[f.name]) for f in dataclasses.fields(cls)})
    return keys


def _field(dotted: str):
    """(group, field, type) of a config key, or a one-line error naming the closest key."""
    keys = _config_keys()
    if dotted not in keys:
        same_field = [key for key in keys if key.endswith("." + dotted.split(".")[-1])]  # the group mistaken
        close = same_field[:1] or difflib.get_close_matches(dotted, keys, n=1)
        hint = f"did you mean {close[0]}?" if close else "see `gpt2zh show-config` for the keys"
        raise UserError(f"--compare {dotted}: no such config key", hint)
    return keys[dotted]


def variant_flags(dotted: str, value: str) -> list[str]:
    """The command-line flags that set dotted to value (a boolean is --x or --no-x)."""
    group, name, tp = _field(dotted)
    if group not in MEASURED_GROUPS:  # checkpoints, the hub: nothing a bench does
        raise UserError(f"--compare {dotted}: the bench does not use {group} settings",
                        f"compare a key of {', '.join(MEASURED_GROUPS)}")
    flag = flag_name(group, name)
    if tp is bool:
        if value.lower() not in ("true", "false"):
            raise UserError(f"--compare {dotted}={value}: {dotted} is true or false", f"use {dotted}=true,false")
        return [flag] if value.lower() == "true" else [f"--no-{flag[2:]}"]
    try:
        parse_text(value, tp)  # a bad value is refused before any variant runs, not after the others
    except BadValue as err:
        raise UserError(f"--compare {dotted}={value}: {err}", "see `gpt2zh bench --help` for the values") from None
    return [flag, value]


def variants(compares: list[str]) -> list[dict[str, str]]:
    """Every combination of the --compare values, in order; one empty variant without --compare."""
    combos: list[dict[str, str]] = [{}]
    for compare in compares:
        key, _, values = compare.partition("=")
        choices = [value.strip() for value in values.split(",") if value.strip()]
        if not key or not choices:
            raise UserError(f"--compare {compare}: expected KEY=V1,V2",
                            "e.g. --compare training.chunked_loss=true,false")
        if key in combos[0] or len(set(choices)) < len(choices):
            raise UserError(f"--compare {compare}: {key} or one of its values is given twice",
                            "name each key once, each value once")
        for value in choices:
            variant_flags(key, value)  # an unknown key or a bad boolean is refused before anything runs
        combos = [{**combo, key: value} for combo in combos for value in choices]
    return combos


def _label(variant: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in variant.items()) or "the plan"


def _child_argv(argv: list[str], variant: dict[str, str], result: Path) -> list[str]:
    extra = [flag for key, value in variant.items() for flag in variant_flags(key, value)]
    return [sys.executable, "-m", "gpt2zh", *argv, *extra, RESULT_FLAG, str(result)]


def child_environment(gpu_count: int, environ: dict) -> dict:
    """One GPU per variant: with several visible and no launcher, stage 3's check would refuse to train on one
    (it asks for torchrun), so the child sees only the first; a user's own CUDA_VISIBLE_DEVICES is kept."""
    if gpu_count > 1 and "CUDA_VISIBLE_DEVICES" not in environ and "WORLD_SIZE" not in environ:
        return {**environ, "CUDA_VISIBLE_DEVICES": "0"}
    return dict(environ)


def _run_child(command: list[str], result: Path, environ: dict) -> tuple[dict, int]:
    """(the child's figures or its failure, how many times Ctrl-C was pressed while it ran). The child's progress
    and warnings reach stderr as they come."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environ)
    interrupted, last = 0, ""
    while True:
        try:
            for line in child.stderr:
                sys.stderr.write(line)
                last = line.strip() or last
            child.wait()
            break
        except KeyboardInterrupt:  # the terminal sent SIGINT to the child too; let it end and say so
            interrupted += 1
    if result.is_file() and result.stat().st_size:
        return json.loads(result.read_text(encoding="utf-8")), interrupted
    why = "stopped by Ctrl-C" if interrupted else (last or f"exit status {child.returncode}")
    return {"error": why.removeprefix("error: ")}, interrupted


def run_variants(argv: list[str], combos: list[dict[str, str]], gpu_count: int = 0) -> list[dict]:
    environ = child_environment(gpu_count, dict(os.environ))
    if environ.get("CUDA_VISIBLE_DEVICES") == "0" and "CUDA_VISIBLE_DEVICES" not in os.environ:
        log.info("bench: %d GPUs: each variant is measured on the first (CUDA_VISIBLE_DEVICES=0); under torchrun "
                 "the tokens/s grow about with the number of GPUs", gpu_count)
    rows, stopped = [], False
    with tempfile.TemporaryDirectory(prefix="gpt2zh-bench-") as scratch:
        for index, variant in enumerate(combos):
            if stopped:
                rows.append({"variant": variant, "error": "not run: the bench was stopped by Ctrl-C"})
                continue
            log.info("bench: %s (%d of %d)", _label(variant), index + 1, len(combos))
            result = Path(scratch) / f"variant-{index}.json"
            figures, interrupted = _run_child(_child_argv(argv, variant, result), result, environ)
            row = {"variant": variant, **figures}
            if interrupted:
                row["error"] = "stopped by Ctrl-C"
                stopped = interrupted > 1  # pressed again while the variant was ending
                try:
                    if index + 1 < len(combos) and not stopped:
                        log.warning("bench: %s stopped; Ctrl-C again within 3 s stops the bench", _label(variant))
                        time.sleep(3)
                except KeyboardInterrupt:
                    stopped = True
            rows.append(row)
    return rows


def _gib(value: float) -> str:
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def above_start(memory: dict) -> float:
    """The measured peak comparable with the estimate: on CPU, above what the process held before the model."""
    return memory["measured_gib"] - (memory["before_model_gib"] or 0.0)


def _cells(row: dict) -> list[str]:
    if "error" in row:
        stopped = row["error"].startswith(("stopped", "not run"))
        return [_label(row["variant"]), row["error"] if stopped else f"failed: {row['error']}", "", "", "", "", "", ""]
    memory, plan = row["memory"], row["plan"]
    utilisation = f"{100 * row['mfu']:.1f} %" if row["mfu"] is not None else "-"
    return [_label(row["variant"]), f"{row['tokens_per_second']:,.0f}", utilisation, f"{row['step_seconds']:.3f}",
            _gib(above_start(memory)), _gib(memory["estimate_gib"]),
            "-" if row["final_loss"] is None else f"{row['final_loss']:.4f}", plan["one_line"]]


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(_cells(row)) + " |" for row in rows])


def footnotes(rows: list[dict]) -> list[str]:
    measured = [row for row in rows if "error" not in row]
    if not measured:
        return []
    first, several = measured[0], len(rows) > 1
    notes = [f"steps: {first['steps']} measured after {first['warmup']} warm-up"]
    sizes = {(row["tokens_per_step"], row["parameters"]) for row in measured}
    for row in measured if len(sizes) > 1 else measured[:1]:
        who = f"{_label(row['variant'])}: " if len(sizes) > 1 else ""
        notes.append(f"{who}{row['tokens_per_step']:,} tokens a step, {row['parameters'] / 1e6:.1f} M parameters")
    before = first["memory"]["before_model_gib"]
    notes.append(f"peak memory: {first['memory']['measured_by']}"
                 + (f", above the {_gib(before)} GiB the process held before the model" if before is not None else "")
                 + "; the estimate is the memory model's, without its CUDA reserve (PITFALLS.md PT12)")
    notes.append(f"MFU: {first['mfu_peak']}")
    everyone = set.intersection(*(set(row["plan"]["notes"]) for row in measured))
    notes += [f"plan: {note}" for note in measured[0]["plan"]["notes"] if note in everyone]
    for row in measured:  # a note only some variants have is named with them
        who = f"{_label(row['variant'])}: " if several else ""
        notes += [f"plan: {who}{note}" for note in row["plan"]["notes"] if note not in everyone]
    return list(dict.fromkeys(notes))


def run_bench(args, argv: list[str]) -> int:
    """argv: the whole command line (`bench ...`); each child gets it with its variant's flags on top."""
    from gpt2zh.request import command_request

    if args.steps < 1 or args.warmup < 0:
        raise UserError(f"--steps {args.steps} --warmup {args.warmup}: --steps must be at least 1 and --warmup at "
                        "least 0", "e.g. --steps 10 --warmup 3")
    if getattr(args, "bench_result", None):  # the child: one variant
        from gpt2zh.bench.measure import run_variant
        from gpt2zh.plan_command import probe_for

        request = command_request(args)
        return run_variant(request, probe_for(request), args.steps, args.warmup, Path(args.bench_result))
    combos = variants(args.compare)
    request = command_request(args)  # the config and preset are checked here, once, before any child starts
    own = [arg for arg in argv if arg != "--json"]
    rows = run_variants(_without_compare(own), combos, len(request.resolved.facts.gpus))
    if args.json:
        print(json.dumps({"variants": rows}, indent=2, ensure_ascii=False))
    else:
        print(table(rows))
        print("\n".join(footnotes(rows)))
    if any(row.get("error", "").startswith(("stopped by Ctrl-C", "not run")) for row in rows):
        return 130  # the user stopped part of it: a script must not take the table for a full one
    return 0 if any("error" not in row for row in rows) else 1


def _without_compare(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--compare":
            skip = True
        elif not arg.startswith("--compare="):
            kept.append(arg)
    return kept


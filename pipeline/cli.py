"""`gpt2zh <stage>` / `python -m gpt2zh <stage>` / scripts/0N_*.py: one entry point for all.

Order matters (G13): parse arguments, set the Hugging Face environment, and only then
import a stage (which imports transformers/datasets/huggingface_hub). This module imports none of
them at import time; a test holds it to that.
"""

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
from pathlib import Path

from gpt2zh import __version__
from gpt2zh.bench.command import MEASURED_GROUPS, bench_options
from gpt2zh.config import GROUPS
from gpt2zh.config.loader import load_layers
from gpt2zh.config.options import Parser, add_config_options
from gpt2zh.console import close_progress_bars, setup_logging
from gpt2zh.errors import UserError
from gpt2zh.hf_env import prepare_hf_environment
from gpt2zh.inference.arguments import add_evaluate_arguments, add_generate_arguments
from gpt2zh.request import Layers, command_request, settings_layers, typed_overrides
from gpt2zh.run_settings import (
    write_settings,
)
from gpt2zh.runlock import is_main_process_by_environment, run_dir_lock
from gpt2zh.stages import (
    STAGES,
    StageRequest,
    built_at,
    load_entry,
    refuse_earlier_stages_settings,
    stage_by_reference,
)
from gpt2zh.stop_signals import Terminated, terminate_by_exception

log = logging.getLogger("gpt2zh")
READ_ONLY_COMMANDS = ("evaluate", "generate", "show-config", "plan", "bench", "diagnose", "doctor")
RUN_ALL = "run"
HELP_ALL = "--help-all"
STAGE_FLAGS = ("--config", "--force", "--run-dir", "--cache-dir", "--quiet")
COMMON_FLAGS = {**{info.command: STAGE_FLAGS for info in STAGES}, RUN_ALL: STAGE_FLAGS,
                "show-config": ("--config", "--run-dir"), "plan": ("--config", "--run-dir"),
                "bench": ("--config", "--run-dir", "--quiet"),
                "diagnose": ("--config", "--run-dir", "--quiet"),
                "evaluate": ("--config", "--run-dir", "--cache-dir", "--quiet"),
                "doctor": ("--run-dir", "--cache-dir")}
ALL_GROUPS = tuple(GROUPS)
GROUPS_SHOWN = {**{info.command: info.groups for info in STAGES}, RUN_ALL: ALL_GROUPS, "show-config": ALL_GROUPS,
                "diagnose": ("data", "model", "training"), "plan": ("data", "tokenizer", "model", "training",
                                                                    "optimization"),
                "bench": MEASURED_GROUPS, "evaluate": ("data",)}


def _add_common(parser: argparse.ArgumentParser, command: str) -> None:
    """Only the flags this command uses: an accepted flag that does nothing misleads."""
    common = parser.add_argument_group("common")
    wanted = COMMON_FLAGS[command]
    if "--config" in wanted:
        common.add_argument("--config", metavar="FILE",
                            help="YAML config, or the name of a shipped one: demo, gpt2-small, ... (default: the "
                                 "run directory's saved settings, else demo)")
    if "--force" in wanted:
        common.add_argument("--force", action="store_true",
                            help="rebuild outputs even when up to date, and replace outputs built from other inputs")
    if command in ("push", RUN_ALL):
        common.add_argument("--dry-run", action="store_true",
                            help="stage 4: list what would be pushed, with sizes, and send nothing")
    if command == RUN_ALL:
        stages = ", ".join(f"{info.number}={info.command}" for info in STAGES)
        common.add_argument("--from-stage", metavar="STAGE",
                            help=f"rerun from this stage on, even if up to date ({stages}); an output built "
                                 "from other inputs is replaced only with --force")
    run_dir_help = ("where free disk space is checked (default: runs)" if command == "doctor" else
                    "run directory shared by all stages; its saved settings are the starting point "
                    "(default: runs/<config name>)")
    common.add_argument("--run-dir", metavar="DIR", help=run_dir_help)
    if "--cache-dir" in wanted:
        common.add_argument("--cache-dir", metavar="DIR",
                            help="cache folder for downloads: Hugging Face's (HF_HOME, set before any HF library is "
                                 "imported) and ModelScope's (MODELSCOPE_CACHE=DIR/modelscope)")
    if "--quiet" in wanted:
        common.add_argument("--quiet", action="store_true", help="warnings and the final summary only")


def _early_flags(argv: list[str]) -> tuple[str | None, str | None]:
    """--config and --run-dir, read before the full parser exists so that --help shows the values a command uses."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    pre.add_argument("--config")
    pre.add_argument("--run-dir")
    try:
        known, _ = pre.parse_known_args(argv)
    except argparse.ArgumentError:  # `--config` without a value: the full parser says so, in one line
        return None, None
    return known.config, known.run_dir


class _HelpAll(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the options of every config group and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        parser.exit()


def _add_command(commands, name: str, base, origin, show_all: bool, own_options=None,
                 **kwargs) -> argparse.ArgumentParser:
    """own_options(parser): the command's own options, listed first in its help (PITFALLS.md NU16)."""
    command = commands.add_parser(name, **kwargs)
    if own_options is not None:
        own_options(command)
    _add_common(command, name)
    shown = ALL_GROUPS if show_all else GROUPS_SHOWN[name]
    add_config_options(command, base, origin, shown)
    command.add_argument(HELP_ALL, action=_HelpAll)
    if shown != ALL_GROUPS:
        hidden = ", ".join(group for group in ALL_GROUPS if group not in shown)
        command.epilog = (f"Options of the other groups ({hidden}) are accepted too and saved in the run's "
                          f"settings; {HELP_ALL} lists them.")
    return command


def _help_values(layers: Layers):
    """(config, origin) for --help: this machine's preset applied, as the command would resolve it; a preset
    that cannot be resolved here is left out (the command itself then says why)."""
    from gpt2zh.hardware.facts import collect_facts
    from gpt2zh.resolution import resolve

    try:
        resolved = resolve(layers.base, layers.command_line, collect_facts(), earlier=layers.earlier)
    except UserError:
        return load_layers(layers.base, layers.command_line), lambda dotted: layers.source
    return resolved.config, lambda dotted: layers.source if (who := resolved.origin(dotted)) == layers.base[0] \
        else who


def _show_config_options(show: argparse.ArgumentParser) -> None:
    show.add_argument("--get", metavar="KEY", help="print one value (hub.repo_id) or a whole group (data)")
    show.add_argument("--sources", action="store_true",
                      help="say for each field which layer set it: the default, the config file or saved settings, "
                           "the GPU preset, or the command line")


def _plan_options(plan: argparse.ArgumentParser) -> None:
    plan.add_argument("--json", action="store_true", help="one JSON object (a list with --all-presets)")
    plan.add_argument("--all-presets", action="store_true", help="one row per shipped preset (configs/presets/)")
    plan.add_argument("--processes", type=int, metavar="N", help="plan for N processes (torchrun), one GPU each")


def build_parser(argv: list[str]) -> Parser:
    layers = settings_layers(*_early_flags(argv), {})
    base, source = _help_values(layers) if {"-h", "--help", HELP_ALL} & set(argv) else \
        (load_layers(layers.base, layers.command_line), lambda dotted: layers.source)
    show_all = HELP_ALL in argv
    parser = Parser(prog="gpt2zh", description="Pretrain a Chinese GPT-2: tokenizer -> dataset -> training -> Hub.")
    parser.argv = argv
    parser.add_argument("--version", action="version", version=f"gpt2zh {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True, parser_class=Parser)
    for info in STAGES:
        _add_command(commands, info.command, base, source, show_all, help=f"stage {info.number}: {info.summary}",
                     description=info.summary)
    _add_command(commands, RUN_ALL, base, source, show_all, help="run every stage in order in one run directory",
                 description="Run all stages in order; up-to-date stages are skipped. Stage 4 runs when "
                             "--hub-repo-id is set; the token and repository are checked before stage 1.")
    _add_command(commands, "show-config", base, source, show_all, own_options=_show_config_options,
                 help="print the settings a command would use (defaults < --config or the run's saved settings < "
                      "GPU preset < command line)",
                 description="Print the config a command would use, as YAML: a run directory's saved settings with "
                             "--run-dir, one value or a whole group with --get.")
    _add_command(commands, "diagnose", base, source, show_all,
                 help="check data, initial loss, gradients, one-batch overfit and the loss history of a run",
                 description="Write <run-dir>/logs/diagnosis.md (and diagnosis.png): each finding with evidence, a "
                             "fix and its PITFALLS.md row. Exit status 1 when a check fails.")
    _add_command(commands, "plan", base, source, show_all, own_options=_plan_options,
                 help="the training plan for this machine or a preset's GPU: batch split, memory, time",
                 description="Print what stage 3 would do: per-device batch x accumulation x processes, precision, "
                             "attention, optimizer, compile and checkpointing with their reasons, the memory "
                             "estimate, an expected time, epochs and compute-optimal tokens. --preset NAME plans "
                             "for that preset's GPU on any machine.")
    _add_command(commands, "bench", base, source, show_all, own_options=bench_options,
                 help="measure tokens/s, MFU and peak memory of the training plan on this machine",
                 description="Train a few optimizer steps of the plan stage 3 would make here (or --preset's) on "
                             "synthetic tokens, after warm-up steps, and print tokens/s, MFU, step time and the peak "
                             "memory beside the memory model's estimate; --compare runs variants side by side, "
                             "each in a process of its own. No tokenizer or corpus is needed.")
    _add_command(commands, "evaluate", base, source, show_all, own_options=add_evaluate_arguments,
                 help="compare models on the same held-out documents by bits per character",
                 description="Score each --model on a run's held-out documents (or --data-files) with a sliding "
                             "window; print a table sorted by bits per character, the figure that compares models "
                             "with different tokenizers.")
    generate = commands.add_parser("generate", help="continue a prompt with a model, streamed to the terminal",
                                   description="Sample continuations of PROMPT; defaults from the model's "
                                               "generation_config.json, flags override.")
    add_generate_arguments(generate)
    doctor = commands.add_parser("doctor", help="environment report: versions, GPU, bf16/TF32, flash-attn, 8-bit Adam",
                                 description="Check the environment; every check prints True or False.")
    doctor.add_argument("--json", action="store_true", help="machine-readable report")
    _add_common(doctor, "doctor")
    return parser


def _check_launcher(command: str) -> None:
    """Under torchrun every process runs this command; only stage 3 is written for that."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and command != "pretrain":
        raise UserError(f"`gpt2zh {command}` was started by a launcher with {world_size} processes",
                        "run stages 1-2 once without torchrun, then `torchrun ... -m gpt2zh pretrain`")


def _announce_settings(request: StageRequest) -> None:
    if request.saved_settings:
        log.info("settings: %s, with this command line on top; --config starts afresh", request.saved_settings)


def _diagnose(args: argparse.Namespace) -> int:
    from gpt2zh.diagnose.command import run_diagnose

    request = command_request(args)
    _announce_settings(request)
    return run_diagnose(request.run_dir, request.config)


def _check_run_dir(root: Path, create: bool) -> None:
    if root.exists() and not root.is_dir():
        raise UserError(f"--run-dir {root} is a file, not a directory", "pass a directory (it is created if missing)")
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--run-dir {root}: cannot create it ({err.strerror})",
                            "pass a directory you can write to") from None


def _run_stages(args: argparse.Namespace) -> int:
    _check_launcher(args.command)
    request = command_request(args)
    if args.command != RUN_ALL:
        before = settings_layers(args.config, args.run_dir, {})
        refuse_earlier_stages_settings(stage_by_reference(args.command), typed_overrides(args),
                                       load_layers(before.base, before.command_line), str(request.run_dir.root))
    read_only = args.command == "push" and request.dry_run  # `run --dry-run` still runs stages 1-3
    _check_run_dir(request.run_dir.root, create=not read_only)
    with contextlib.nullcontext() if read_only else run_dir_lock(request.run_dir.root, args.command):
        from gpt2zh.preflight import preflight

        if args.command == RUN_ALL:
            from gpt2zh.run_all import run_all, selected_stages

            stages = selected_stages(request, args.from_stage)
        else:
            stages = [(stage_by_reference(args.command), request.force)]
        request.checks = preflight(request, stages)  # what each stage's check found, for the stage to reuse
        _announce_settings(request)

        def save_settings() -> None:
            """After each stage that built its output: a failed or refused command, or one whose stages were
            all up to date, leaves the run's settings as they were (flags for a later stage are given to it)."""
            if not read_only and is_main_process_by_environment():
                write_settings(request.run_dir.root, args.command, request.resolved.settings, request.overrides)

        if args.command == RUN_ALL:
            return run_all(request, stages, save_settings)
        info = stages[0][0]
        before = built_at(request.run_dir, info)
        load_entry(info)(request)
        if built_at(request.run_dir, info) != before:
            save_settings()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logger = setup_logging()
    previous_sigterm = terminate_by_exception()
    args = None
    try:
        args = build_parser(argv).parse_args(argv)
        if getattr(args, "quiet", False):
            logger.setLevel("WARNING")
        prepare_hf_environment(getattr(args, "cache_dir", None))
        if args.command == "show-config":
            from gpt2zh.show_config import show_config

            return show_config(args, command_request(args))
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "plan":
            from gpt2zh.plan_command import run_plan

            return run_plan(args)
        if args.command == "bench":
            from gpt2zh.bench.command import run_bench

            return run_bench(args, argv)
        if args.command == "evaluate":
            from gpt2zh.inference.evaluate_command import run_evaluate

            return run_evaluate(args)
        if args.command == "generate":
            from gpt2zh.inference.generate_command import run_generate

            return run_generate(args)
        if args.command == "doctor":
            from gpt2zh.doctor import run_doctor

            return run_doctor(Path(args.run_dir or "runs"), args.json)
        return _run_stages(args)
    except UserError as err:
        close_progress_bars()
        print(f"error: {err.one_line()}", file=sys.stderr, flush=True)
        return err.exit_code
    except BrokenPipeError:  # `gpt2zh plan | head`: the reader left; no traceback over its output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        close_progress_bars()
        print(f"error: disk full while writing {err.filename or 'a file'} — free space there and rerun the same "
              "command; outputs of finished stages are kept", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, Terminated) as stop:
        close_progress_bars()
        name = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        if args is None or args.command in READ_ONLY_COMMANDS:  # nothing of a run was being written
            print(f"stopped by {name}", file=sys.stderr, flush=True)
        else:
            print(f"stopped by {name}: outputs of finished stages are kept, the interrupted one was removed; rerun "
                  "the same command to continue", file=sys.stderr, flush=True)
        return getattr(stop, "exit_code", 130)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def main_for(command: str) -> int:
    """Entry for the numbered scripts: `python scripts/01_train_tokenizer.py [options]`."""
    return main([command, *sys.argv[1:]])

"""`gpt2zh <stage>` / `python -m pipeline <stage>` / scripts/0N_*.py: one entry point for all.

Order matters (seed 002 §13): parse arguments, set the Hugging Face environment, and only then
import a stage (which imports transformers/datasets/huggingface_hub). This module imports none of
them at import time; a test holds it to that.
"""

import argparse
import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.config import find_config, load_config
from pipeline.config.options import Parser, add_config_options, overrides_from
from pipeline.console import close_progress_bars, setup_logging
from pipeline.errors import UserError
from pipeline.hf_env import prepare_hf_environment
from pipeline.rundir import RunDir
from pipeline.runlock import run_dir_lock
from pipeline.stages import STAGES, StageRequest, load_entry, stage_by_reference
from pipeline.stop_signals import Terminated, terminate_by_exception

RUN_ALL = "run"


def _add_common(parser: argparse.ArgumentParser, with_config: bool, command: str = "") -> None:
    common = parser.add_argument_group("common")
    if with_config:
        common.add_argument("--config", metavar="FILE", help="YAML config, or a name from configs/ (default: demo)")
        common.add_argument("--force", action="store_true", help="rebuild outputs even when they are up to date")
    if command in ("push", RUN_ALL):
        common.add_argument("--dry-run", action="store_true",
                            help="stage 4: list what would be pushed, with sizes, and send nothing")
    if command == RUN_ALL:
        stages = ", ".join(f"{info.number}={info.command}" for info in STAGES)
        common.add_argument("--from-stage", metavar="STAGE",
                            help=f"rerun from this stage on, even if up to date ({stages})")
    common.add_argument("--run-dir", metavar="DIR",
                        help="run directory shared by all stages (default: runs/<config name>)")
    common.add_argument("--cache-dir", metavar="DIR",
                        help="Hugging Face cache (HF_HOME), set before any HF library is imported")
    common.add_argument("--quiet", action="store_true", help="warnings and the final summary only")


def _config_flag(argv: list[str]) -> str | None:
    """The --config value, read before the full parser exists so that --help shows its values."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    return known.config


def build_parser(argv: list[str]) -> Parser:
    config_path = find_config(_config_flag(argv))
    base = load_config(config_path)
    source = config_path.name
    parser = Parser(prog="gpt2zh", description="Pretrain a Chinese GPT-2: tokenizer -> dataset -> training -> Hub.")
    parser.add_argument("--version", action="version", version=f"gpt2zh {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True, parser_class=Parser)
    for info in STAGES:
        stage = commands.add_parser(info.command, help=f"stage {info.number}: {info.summary}", description=info.summary)
        _add_common(stage, with_config=True, command=info.command)
        add_config_options(stage, base, source)
    run_all = commands.add_parser(RUN_ALL, help="run every stage in order in one run directory",
                                  description="Run all stages in order; up-to-date stages are skipped. Stage 4 runs "
                                              "when --hub-repo-id is set; the token and repository are checked "
                                              "before stage 1.")
    _add_common(run_all, with_config=True, command=RUN_ALL)
    add_config_options(run_all, base, source)
    show = commands.add_parser("show-config", help="print the resolved config (defaults < --config < command line)",
                               description="Print the config a stage would use, as YAML, or one value with --get.")
    _add_common(show, with_config=True, command="show-config")
    show.add_argument("--get", metavar="KEY", help="print one value, e.g. hub.repo_id")
    add_config_options(show, base, source)
    diagnose = commands.add_parser(
        "diagnose", help="check data, initial loss, gradients, one-batch overfit and the loss history of a run",
        description="Write <run-dir>/logs/diagnosis.md (and diagnosis.png): each finding with evidence, a fix and "
                    "its PITFALLS.md row. Exit status 1 when a check fails.")
    _add_common(diagnose, with_config=True, command="diagnose")
    add_config_options(diagnose, base, source)
    doctor = commands.add_parser("doctor", help="environment report: versions, GPU, bf16/TF32, flash-attn, 8-bit Adam",
                                 description="Check the environment; every check prints True or False.")
    _add_common(doctor, with_config=False)
    doctor.add_argument("--json", action="store_true", help="machine-readable report")
    return parser


def _check_launcher(command: str) -> None:
    """Under torchrun every process runs this command; only stage 3 is written for that."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and command != "pretrain":
        raise UserError(f"`gpt2zh {command}` was started by a launcher with {world_size} processes",
                        "run stages 1-2 once without torchrun, then `torchrun ... -m pipeline pretrain`")


def _request(args: argparse.Namespace) -> StageRequest:
    """The resolved config and run directory a command works on (defaults < --config < command line)."""
    config_path = find_config(args.config)
    overrides = overrides_from(args)
    config = load_config(config_path, overrides)
    run_dir = RunDir(Path(args.run_dir) if args.run_dir else Path("runs") / config_path.stem)
    return StageRequest(config=config, config_source=str(config_path), run_dir=run_dir,
                        force=getattr(args, "force", False), config_path=config_path, overrides=overrides,
                        dry_run=getattr(args, "dry_run", False))


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.config import config_to_dict

    values = config_to_dict(_request(args).config)
    if args.get is None:
        print(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), end="")
        return 0
    group, _, key = args.get.partition(".")
    if group not in values or key not in values[group]:
        raise UserError(f"--get: no config key {args.get!r}", "use group.field, e.g. hub.repo_id")
    value = values[group][key]
    print(" ".join(map(str, value)) if isinstance(value, list) else value)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from pipeline.diagnose.command import run_diagnose

    request = _request(args)
    return run_diagnose(request.run_dir, request.config)


def _run_stages(args: argparse.Namespace) -> int:
    _check_launcher(args.command)
    request = _request(args)
    read_only = args.command == "push" and request.dry_run  # `run --dry-run` still runs stages 1-3
    with contextlib.nullcontext() if read_only else run_dir_lock(request.run_dir.root, args.command):
        if args.command == RUN_ALL:
            from pipeline.run_all import run_all

            return run_all(request, args.from_stage)
        load_entry(stage_by_reference(args.command))(request)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logger = setup_logging()
    previous_sigterm = terminate_by_exception()
    try:
        args = build_parser(argv).parse_args(argv)
        if args.quiet:
            logger.setLevel("WARNING")
        prepare_hf_environment(args.cache_dir)
        if args.command == "show-config":
            return _show_config(args)
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "doctor":
            from pipeline.doctor import run_doctor

            return run_doctor(Path(args.run_dir or "runs"), args.json)
        return _run_stages(args)
    except UserError as err:
        close_progress_bars()
        print(f"error: {err.one_line()}", file=sys.stderr, flush=True)
        return err.exit_code
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
        print(f"stopped by {name}: outputs of finished stages are kept, the interrupted one was removed; rerun the "
              "same command to continue", file=sys.stderr, flush=True)
        return getattr(stop, "exit_code", 130)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def main_for(command: str) -> int:
    """Entry for the numbered scripts: `python scripts/01_train_tokenizer.py [options]`."""
    return main([command, *sys.argv[1:]])

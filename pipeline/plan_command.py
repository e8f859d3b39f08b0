"""`gpt2zh plan`: stage 3's plan without training, for this machine or, with --preset, for that preset's GPU
on any machine; --all-presets gives one row per preset (the README's table is its output)."""

import json
import logging

from gpt2zh.dataset.loading import dataset_parts, train_blocks
from gpt2zh.errors import UserError
from gpt2zh.hardware.presets import available_presets, load_preset
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.request import command_request
from gpt2zh.rundir import RunDir
from gpt2zh.training.plan import Probe, plan_sizes, plan_training
from gpt2zh.training.plan_report import plan_lines, plan_record

log = logging.getLogger("gpt2zh")


def run_facts(run: RunDir) -> tuple[int | None, int | None, int | None]:
    """(vocabulary, block size, training blocks) of the stages that already ran in the run directory."""
    tokenizer = TokenizerManifest.read(run.tokenizer)
    try:
        parts = dataset_parts(run.dataset)
    except UserError:
        parts = []
    block = parts[0][1].block_size if parts else None
    return (tokenizer.vocab_size if tokenizer else None, block,
            train_blocks([folder for folder, _ in parts]) if parts else None)


def probe_for(request) -> Probe | None:
    """8-bit Adam: probed for real on this machine, assumed on another preset's card."""
    if request.config.optimization.optimizer != "adamw_8bit":
        return None
    if request.resolved.what_if:
        return Probe(True, "assumed on the preset's card; stage 3 probes it there")
    from gpt2zh.hardware.decisions import training_device
    from gpt2zh.hardware.facts import probe_8bit_adam

    return Probe(*probe_8bit_adam(training_device(request.resolved.facts)))


def corpus_bytes(files: list[str]) -> int | None:
    """Bytes of local, uncompressed corpus files (sizes say little about compressed or parquet ones)."""
    if not files or any(str(path).startswith("hf://") for path in files):
        return None
    from gpt2zh.corpus.sources import sources_for, text_bytes

    return text_bytes(sources_for(files)[0])


def plan_for(request) -> dict:
    config, facts = request.config, request.resolved.facts
    vocab, block, blocks = run_facts(request.run_dir)
    sizes = plan_sizes(config, vocab, block)
    plan = plan_training(config, facts, facts.world_size, probe_for(request), request.resolved.origin, sizes)
    record = plan_record(request.resolved, plan, sizes, blocks)
    if blocks is None:
        record["corpus_bytes"] = corpus_bytes(config.data.files)
        record["adopted_tokenizer"] = bool(config.model.init_from)
    return record


def _row(name: str, record: dict | None, error: str | None) -> str:
    if error is not None:
        card = load_preset(name).card
        gpu = f"{card.name} ({card.memory_gib:g} GiB)" if card else "CPU"
        return f"| {name} | {gpu} | error: {error} | | | |"
    memory = record["memory_gib"]["total"]
    gpu = f"{record['device']} ({record['gpu_memory_gib']:g} GiB)" if record["gpu_memory_gib"] else "CPU"
    batch = (f"{record['per_device_batch_size']} x {record['gradient_accumulation_steps']} x {record['processes']}"
             + (", checkpointing" if record["activation_checkpointing"] else ""))
    speed = f"{record['tokens_per_second_estimate']:,}" if record["tokens_per_second_estimate"] else "-"
    hours = f"{record['hours_estimate']:,.1f}" if record["hours_estimate"] else "-"
    return f"| {name} | {gpu} | {batch} | {memory:.1f} | {speed} | {hours} |"


def _all_presets(args) -> int:
    from gpt2zh.config.options import overrides_from

    if "training.preset" in overrides_from(args):
        raise UserError("--all-presets plans every preset, so --preset names none of them",
                        "leave out --preset, or leave out --all-presets")
    rows, records = [], []
    for name in available_presets():
        try:
            record, error = plan_for(command_request(args, True, args.processes, name)), None
        except UserError as err:
            record, error = None, err.one_line()
        records.append({"preset": name, **(record or {"error": error})})
        rows.append(_row(name, record, error))
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0 if any("error" not in record for record in records) else 1
    first = next((record for record in records if "parameters" in record), None)
    if first is not None:
        print(f"{args.config or 'demo'}: {first['parameters'] / 1e6:.1f} M parameters, {first['max_steps']:,} steps "
              f"of {first['global_batch_size']} x {first['block_size']:,} tokens")
    print("| preset | GPU | batch x accumulation x processes | memory GiB | tokens/s (30 % MFU) | hours |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    for warning in dict.fromkeys(w for record in records for w in record.get("warnings", [])):
        print(f"warning: {warning}")
    return 0 if any("error" not in record for record in records) else 1


def _default_processes() -> int | None:
    """Several GPUs and no launcher: plan for one process per GPU, as torchrun would start them."""
    from gpt2zh.hardware.facts import collect_facts

    facts = collect_facts()
    if len(facts.gpus) > 1 and facts.world_size == 1:
        log.info("plan: %d GPUs: planned for %d processes (torchrun --nproc_per_node %d); --processes changes it",
                 len(facts.gpus), len(facts.gpus), len(facts.gpus))
        return len(facts.gpus)
    return None


def run_plan(args) -> int:
    if args.processes is not None and args.processes < 1:
        raise UserError(f"--processes {args.processes}: must be at least 1", "use --processes 1 or more")
    if args.all_presets:
        return _all_presets(args)
    request = command_request(args, True, args.processes or _default_processes())
    if request.saved_settings:
        log.info("settings: %s, with this command line on top", request.saved_settings)
    record = plan_for(request)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        print("\n".join(plan_lines(record)))
    return 0


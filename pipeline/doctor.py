"""`gpt2zh doctor`: the environment report (G7, and the debug commands of G17, automated).

Every check has an explicit True/False value, never None (G7): a `check_environment` that
returned None on non-zero ranks silently disabled Flash Attention there. Whether the hubs answer (CN4) is
reported with its fix but never required: a run from local files and a local model needs neither.
"""

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from gpt2zh.hardware.decisions import (
    MINIMUM_VERSIONS,
    bf16_native,
    compile_available,
    flash_attention_eligible,
    primary_gpu,
    tf32_eligible,
    training_device,
    version_at_least,
)
from gpt2zh.hardware.facts import HardwareFacts, StorageFacts
from gpt2zh.hf_env import is_mirror
from gpt2zh.network_checks import Reachability, collect_reachability, endpoints_in_force

MIN_FREE_GIB = 10.0
# (CN4) What to do when a hub does not answer; through a mirror, the official endpoint's fix does not apply.
HF_UNREACHABLE_FIX = ("set HF_ENDPOINT=https://hf-mirror.com for downloads (uploads need huggingface.co: publish "
                      "with --hub-provider modelscope)")
MIRROR_UNREACHABLE_FIX = "check the network or HF_ENDPOINT"
MODELSCOPE_UNREACHABLE_FIX = "check the network or MODELSCOPE_ENDPOINT"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = False  # a False required check makes doctor exit 1
    fix: str = ""  # shown under a False check

    def __post_init__(self):
        if not isinstance(self.ok, bool):  # (G7) None passed for False
            raise TypeError(f"check {self.name!r} returned {self.ok!r}, not True/False")


def _version_check(name: str, installed: str | None, required: bool) -> Check:
    minimum = MINIMUM_VERSIONS[name]
    ok = version_at_least(installed, minimum)
    detail = f"{installed or 'not installed'} (minimum {minimum})"
    return Check(f"{name} >= {minimum}", ok, detail, required)


def _reachability_check(found: Reachability) -> Check:
    if found.variable == "HF_ENDPOINT":
        fix = MIRROR_UNREACHABLE_FIX if is_mirror(found.url) else HF_UNREACHABLE_FIX
    else:
        fix = MODELSCOPE_UNREACHABLE_FIX
    return Check(f"{found.name} reachable", found.reachable, f"{found.url}: {found.detail}",
                 fix="" if found.reachable else fix)


def doctor_checks(facts: HardwareFacts, storage: StorageFacts, adam8bit: tuple[bool, str],
                  reachability: tuple[Reachability, ...] | list[Reachability] = ()) -> list[Check]:
    """All checks from collected facts; pure, so fabricated GPU facts and network answers test every branch."""
    gpu = primary_gpu(facts)
    gpu_detail = "; ".join(f"{g.name}, {g.memory_gib:g} GiB, SM {g.capability[0]}.{g.capability[1]}"
                           for g in facts.gpus)
    flash_ok, flash_detail = flash_attention_eligible(facts)
    compile_ok, compile_detail = compile_available(facts)
    checks = [
        _version_check("python", facts.python_version, required=True),
        _version_check("torch", facts.torch_version, required=True),
        _version_check("transformers", facts.versions.get("transformers"), required=True),
        Check("CUDA available", facts.cuda_available,
              f"{len(facts.gpus)} GPU(s)" if facts.cuda_available else "no CUDA device: training runs on CPU"),
        Check("torch built with CUDA", facts.cuda_version is not None,
              f"CUDA {facts.cuda_version}" if facts.cuda_version else "CPU-only torch build"),
        Check("GPU", gpu is not None, gpu_detail or "none"),
        Check("bf16 native (SM >= 8.0)", bf16_native(facts), "bf16 mixed precision" if bf16_native(facts) else
              ("fp16 + loss scaling" if gpu else "fp32 on CPU")),
        Check("TF32 eligible (SM >= 8.0)", tf32_eligible(facts),
              "enabled for matmuls" if tf32_eligible(facts) else "not on this device"),
        Check("flash-attn importable", facts.flash_attn_version is not None,
              facts.flash_attn_version or "not installed or fails to import"),
        _version_check("flash-attn", facts.flash_attn_version, required=False),
        Check("flash-attn eligible", flash_ok, flash_detail),
        Check(f"bitsandbytes 8-bit Adam on {training_device(facts)}", adam8bit[0], adam8bit[1]),
        Check("torch.compile available", compile_ok, compile_detail),
        Check("HF cache writable", storage.cache_writable, storage.cache_dir, required=True),
        Check(f"free disk >= {MIN_FREE_GIB:g} GiB", storage.free_gib >= MIN_FREE_GIB,
              f"{storage.free_gib:g} GiB free at {storage.run_dir}"),
    ]
    if facts.world_size > 1:
        fits = facts.world_size <= len(facts.gpus) or not facts.gpus  # CPU runs (gloo) may use any world size
        checks.append(Check("launcher world size fits GPUs", fits,
                            f"WORLD_SIZE={facts.world_size}, {len(facts.gpus)} GPU(s)"))
    checks += [_reachability_check(found) for found in reachability]
    return checks


def render(checks: list[Check], facts: HardwareFacts) -> str:
    width = max(len(c.name) for c in checks)
    lines = ["gpt2zh doctor: environment report"]
    for c in checks:
        required = "  (required)" if c.required and not c.ok else ""
        lines.append(f"  {str(c.ok):<5}  {c.name:<{width}}  {c.detail}{required}")
        if c.fix and not c.ok:
            lines.append(f"  {'':<5}  {'':<{width}}  fix: {c.fix}")
    libraries = ", ".join(f"{name} {version or '-'}" for name, version in facts.versions.items())
    lines.append(f"  libraries: {libraries}")
    return "\n".join(lines)


def run_doctor(run_dir: Path, as_json: bool) -> int:
    from gpt2zh.hardware.facts import collect_facts, collect_storage, probe_8bit_adam

    # The hubs are probed while the local facts are collected: a hanging network costs doctor no extra time.
    network: list[Reachability] = []
    probes = threading.Thread(target=lambda: network.extend(collect_reachability(endpoints_in_force(os.environ))),
                              name="hub probes", daemon=True)
    probes.start()
    facts = collect_facts(import_torch=True)  # the CUDA build and flash-attn, whatever the machine
    storage = collect_storage(run_dir)
    adam8bit = probe_8bit_adam(training_device(facts))
    probes.join()  # collect_reachability returns within its timeout
    checks = doctor_checks(facts, storage, adam8bit, network)
    if as_json:
        print(json.dumps({"facts": facts.as_dict(), "storage": asdict(storage),
                          "network": [asdict(found) for found in network],
                          "checks": [asdict(c) for c in checks]}, indent=2, ensure_ascii=False))
    else:
        print(render(checks, facts))
    return 1 if any(c.required and not c.ok for c in checks) else 0

"""Each card's peak dense throughput, from the vendor's data sheets: what MFU divides by.

One table for the presets, `gpt2zh plan`, `gpt2zh bench` and stage 3. TFLOP/s without sparsity (data
sheets print the 2:4-sparsity figure, twice the dense one, with an asterisk): tensor cores with fp32
accumulation for bf16/fp16 (what PyTorch uses; GeForce cards run fp16 accumulation twice as fast) and for
TF32, and the CUDA cores' fp32 rate. A card is matched on the name torch reports, most specific pattern
first (an H100 PCIe is not an H100 SXM; an RTX 4090 D is not an RTX 4090). An unknown card has no MFU,
with the reason, rather than one computed against another card's peak (MFU above 100 % on some cards).
"""

import re
from dataclasses import dataclass

HOPPER = "NVIDIA {} Tensor Core GPU datasheet (dense: the sparsity figures halved)"
AMPERE_DC = "NVIDIA {} Tensor Core GPU datasheet (dense: the sparsity figures halved)"
ADA_GEFORCE = "NVIDIA Ada GPU architecture whitepaper, appendix A (RTX 4090), fp32 accumulation"


@dataclass(frozen=True)
class CardPeak:
    card: str
    pattern: str              # a regular expression on torch.cuda.get_device_name()
    bf16: float | None        # TFLOP/s; None: no such tensor-core mode on the card
    fp16: float
    tf32: float | None
    fp32: float
    source: str


PEAKS = (
    CardPeak("H100 NVL", r"H100 NVL", 835.0, 835.0, 417.5, 60.0, HOPPER.format("H100")),
    CardPeak("H100 PCIe", r"H100 PCIe", 756.0, 756.0, 378.0, 51.0, HOPPER.format("H100")),
    CardPeak("H100 SXM", r"H100", 989.5, 989.5, 494.5, 67.0, HOPPER.format("H100")),
    CardPeak("H200 NVL", r"H200 NVL", 835.0, 835.0, 417.5, 60.0, HOPPER.format("H200")),
    CardPeak("H200 SXM", r"H200", 989.5, 989.5, 494.5, 67.0, HOPPER.format("H200")),
    CardPeak("H800 PCIe", r"H800 PCIe", 756.0, 756.0, 378.0, 51.0, HOPPER.format("H800")),
    CardPeak("H800 SXM", r"H800", 989.5, 989.5, 494.5, 67.0, HOPPER.format("H800")),
    CardPeak("A100", r"A100", 312.0, 312.0, 156.0, 19.5, AMPERE_DC.format("A100")),
    CardPeak("A800", r"A800", 312.0, 312.0, 156.0, 19.5, AMPERE_DC.format("A800")),
    CardPeak("A40", r"\bA40\b", 149.7, 149.7, 74.8, 37.4, "NVIDIA A40 datasheet (dense)"),
    CardPeak("A10", r"\bA10\b", 125.0, 125.0, 62.5, 31.2, "NVIDIA A10 Tensor Core GPU datasheet (dense)"),
    CardPeak("L40S", r"\bL40S\b", 362.05, 362.05, 183.0, 91.6, "NVIDIA L40S datasheet (dense)"),
    CardPeak("L40", r"\bL40\b", 181.05, 181.05, 90.5, 90.5, "NVIDIA L40 datasheet (dense)"),
    CardPeak("L4", r"\bL4\b", 121.0, 121.0, 60.0, 30.3, "NVIDIA L4 Tensor Core GPU datasheet (dense)"),
    CardPeak("V100S PCIe", r"V100S", None, 130.0, None, 16.4, "NVIDIA V100 Tensor Core GPU datasheet"),
    CardPeak("V100 SXM2", r"V100-SXM2|V100 SXM2", None, 125.0, None, 15.7, "NVIDIA V100 Tensor Core GPU datasheet"),
    CardPeak("V100 PCIe", r"V100-PCIE|V100 PCIe", None, 112.0, None, 14.0, "NVIDIA V100 Tensor Core GPU datasheet"),
    CardPeak("T4", r"\bT4\b", None, 65.0, None, 8.1, "NVIDIA T4 Tensor Core GPU datasheet (mixed precision)"),
    CardPeak("RTX 3090", r"RTX 3090(?! ?Ti)", 71.0, 71.0, 35.6, 35.6,
             "NVIDIA Ampere GA102 GPU architecture whitepaper, appendix A (RTX 3090), fp32 accumulation"),
    CardPeak("RTX 4090 D", r"RTX 4090 ?D", 147.1, 147.1, 73.5, 73.5,
             "NVIDIA RTX 4090 D specifications (14,592 CUDA cores at 2.52 GHz): the RTX 4090's rates per core "
             "and clock from the Ada whitepaper"),
    CardPeak("RTX 4090", r"RTX 4090(?! ?D)", 165.2, 165.2, 82.6, 82.6, ADA_GEFORCE),
    CardPeak("RTX 5090", r"RTX 5090", 209.5, 209.5, 104.8, 104.8,
             "NVIDIA RTX Blackwell GPU architecture whitepaper, appendix A (RTX 5090), fp32 accumulation"),
)
PEAK_TABLE = "pipeline/hardware/peaks.py"


def card_peak(gpu_name: str) -> CardPeak | None:
    for peak in PEAKS:
        if re.search(peak.pattern, gpu_name, flags=re.IGNORECASE):
            return peak
    return None


def compute_mode(precision: str, tf32: bool, peak: CardPeak) -> str:
    """Which of the card's rates the training's matmuls run at."""
    if precision in ("bf16", "fp16"):
        return precision
    return "tf32" if tf32 and peak.tf32 is not None else "fp32"


def peak_tflops(gpu_name: str | None, precision: str, tf32: bool) -> tuple[float | None, str]:
    """(peak TFLOP/s of one card for this precision, what it is), or (None, why there is none)."""
    if gpu_name is None:
        return None, "no MFU on CPU: MFU is measured against a GPU's peak"
    peak = card_peak(gpu_name)
    if peak is None:
        return None, (f"no MFU: {gpu_name} is not in the table of card peaks ({PEAK_TABLE}); its data sheet's "
                      "dense figures would add it")
    mode = compute_mode(precision, tf32, peak)
    value = getattr(peak, mode)
    if value is None:
        return None, f"no MFU: the {peak.card} has no {mode} tensor cores"
    return value, f"{peak.card} dense {mode} peak {value:g} TFLOP/s ({peak.source})"

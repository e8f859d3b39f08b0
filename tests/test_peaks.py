"""Each card's peak (pipeline/hardware/peaks.py): the right row for torch's device name, the rate for the
precision trained in, and no MFU, with the reason, where there is no peak."""

import pytest

from gpt2zh.hardware.peaks import card_peak, peak_tflops
from gpt2zh.hardware.presets import available_presets, load_preset
from gpt2zh.training.memory_model import ModelShape
from gpt2zh.training.mfu import REFERENCE_MFU, flops_per_token, mfu, reference_tokens_per_second


@pytest.mark.parametrize(("torch_name", "card"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H800", "H800 SXM"), ("NVIDIA H800 PCIe", "H800 PCIe"),
    ("NVIDIA A100-SXM4-40GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"), ("NVIDIA A800-SXM4-80GB", "A800"),
    ("NVIDIA A10", "A10"), ("NVIDIA A40", "A40"), ("NVIDIA L4", "L4"), ("NVIDIA L40", "L40"), ("NVIDIA L40S", "L40S"),
    ("Tesla V100-SXM2-32GB", "V100 SXM2"), ("Tesla V100-PCIE-16GB", "V100 PCIe"),
    ("Tesla V100S-PCIE-32GB", "V100S PCIe"),
    ("Tesla T4", "T4"), ("NVIDIA GeForce RTX 3090", "RTX 3090"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 4090 D", "RTX 4090 D"), ("NVIDIA GeForce RTX 5090", "RTX 5090"),
])
def test_each_card_is_matched_by_its_own_row_never_by_a_shorter_name(torch_name, card):
    assert card_peak(torch_name).card == card


@pytest.mark.parametrize("torch_name", ["NVIDIA GeForce RTX 3090 Ti", "NVIDIA GeForce RTX 3080", "Tesla V100",
                                        "NVIDIA A6000", "NVIDIA T400"])
def test_a_card_missing_from_the_table_matches_no_other_cards_row(torch_name):
    assert card_peak(torch_name) is None


def test_every_presets_card_has_a_peak():
    for name in available_presets():
        preset = load_preset(name)
        assert (preset.card is None) is (preset.gpu == "none"), name
        if preset.card is not None:
            assert card_peak(preset.card.name) is not None, name


@pytest.mark.parametrize(("precision", "tf32", "expected"), [
    ("bf16", True, (989.5, "H100 SXM dense bf16 peak 989.5 TFLOP/s")),
    ("fp16", False, (989.5, "H100 SXM dense fp16 peak 989.5 TFLOP/s")),
    ("fp32", True, (494.5, "H100 SXM dense tf32 peak 494.5 TFLOP/s")),
    ("fp32", False, (67.0, "H100 SXM dense fp32 peak 67 TFLOP/s")),
])
def test_the_peak_is_the_rate_of_the_precision_trained_in(precision, tf32, expected):
    value, about = peak_tflops("NVIDIA H100 80GB HBM3", precision, tf32)
    assert (value, about.split(" (")[0]) == expected
    assert about.endswith("(NVIDIA H100 Tensor Core GPU datasheet (dense: the sparsity figures halved))")


def test_no_peak_means_no_mfu_and_says_why():
    assert peak_tflops(None, "fp32", False) == (None, "no MFU on CPU: MFU is measured against a GPU's peak")
    assert peak_tflops("NVIDIA GeForce RTX 3080", "bf16", True) == (
        None, "no MFU: NVIDIA GeForce RTX 3080 is not in the table of card peaks (pipeline/hardware/peaks.py); its "
              "data sheet's dense figures would add it")
    assert peak_tflops("Tesla T4", "bf16", False) == (None, "no MFU: the T4 has no bf16 tensor cores")
    assert peak_tflops("Tesla T4", "fp32", True)[0] == 8.1  # no TF32 on Turing: the CUDA cores' rate


def test_mfu_divides_by_the_cards_peak_times_the_gpus():
    per_token = flops_per_token(124_000_000, 12, 1024, 768)
    assert per_token == 6 * 124_000_000 + 12 * 12 * 1024 * 768
    assert mfu(100_000, per_token, 312.0, 1) == pytest.approx(100_000 * per_token / 312e12)
    assert mfu(100_000, per_token, 989.5, 8) == pytest.approx(100_000 * per_token / (8 * 989.5e12))
    assert mfu(100_000, per_token, None, 1) is None and mfu(100_000, per_token, 312.0, 0) is None


def test_the_plans_reference_speed_uses_the_peak_of_the_precision_it_trains_in():
    shape = ModelShape(12, 12, 768, 1024, 32000)
    per_token = flops_per_token(shape.parameters, 12, 1024, 768)
    bf16 = reference_tokens_per_second("NVIDIA A100-SXM4-80GB", "bf16", True, 2, shape, 1024)
    assert bf16 == pytest.approx(REFERENCE_MFU * 312e12 * 2 / per_token)
    tf32 = reference_tokens_per_second("NVIDIA A100-SXM4-80GB", "fp32", True, 1, shape, 1024)
    assert tf32 == pytest.approx(REFERENCE_MFU * 156e12 / per_token)
    assert reference_tokens_per_second(None, "fp32", False, 1, shape, 1024) is None


def test_the_peak_table_cites_a_vendor_source_for_every_row():
    from gpt2zh.hardware.peaks import PEAKS

    assert all(peak.source.startswith("NVIDIA ") for peak in PEAKS)
    assert len({peak.card for peak in PEAKS}) == len(PEAKS)
    assert all(peak.tf32 is None or peak.tf32 <= peak.fp16 for peak in PEAKS)

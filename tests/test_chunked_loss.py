"""The chunked loss (pipeline/training/chunked_loss.py) is transformers' causal-LM loss: the same value and the
same gradients, in training and evaluation, with ignored labels and the Trainer's token count, over one
chunk or many; generation and the saved model are untouched."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt2zh.training import memory_model
from gpt2zh.training.chunked_loss import causal_lm_loss, loss_kernel, use_chunked_loss

VOCAB = 3000


def _pair(seed: int = 0):
    """(transformers' model, the same weights with the chunked loss)."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh", bos_token_id=1,
                        eos_token_id=2, pad_token_id=0)
    plain = GPT2LMHeadModel(config)
    plain.loss_type = "ForCausalLM"
    chunked = GPT2LMHeadModel(config)
    chunked.load_state_dict(plain.state_dict())
    chunked.loss_type = "ForCausalLM"
    return plain, use_chunked_loss(chunked)


def _batch():
    ids = torch.randint(3, VOCAB, (3, 64), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :10] = -100  # ignored tokens, as a padded or masked batch has
    return ids, labels


def _loss_and_grads(model, ids, labels, **kwargs):
    model.zero_grad()
    loss = model(input_ids=ids, labels=labels, **kwargs).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("num_items", [None, 150])
def test_in_fp32_the_loss_and_every_gradient_equal_transformers_own(num_items):
    plain, chunked = _pair()
    ids, labels = _batch()
    extra = {"num_items_in_batch": torch.tensor(num_items)} if num_items else {}
    expected, expected_grads = _loss_and_grads(plain, ids, labels, **extra)
    loss, grads = _loss_and_grads(chunked, ids, labels, **extra)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_many_chunks_give_what_one_chunk_gives(monkeypatch):
    plain, chunked = _pair()
    ids, labels = _batch()
    expected, expected_grads = _loss_and_grads(plain, ids, labels)
    monkeypatch.setattr(memory_model, "CHUNK_BYTES", 4 * VOCAB * 7)  # 7 tokens a chunk: 28 chunks, the last short
    assert memory_model.chunk_tokens(VOCAB) == 7
    loss, grads = _loss_and_grads(chunked, ids, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(grads["transformer.wte.weight"], expected_grads["transformer.wte.weight"],
                               rtol=1e-4, atol=1e-6)


def test_under_bf16_autocast_the_loss_and_gradients_match_within_bf16_rounding():
    plain, chunked = _pair()
    ids, labels = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, expected_grads = _loss_and_grads(plain, ids, labels)
        loss, grads = _loss_and_grads(chunked, ids, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)
    for name, grad in expected_grads.items():
        cosine = torch.nn.functional.cosine_similarity(grads[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.999, name


def test_evaluation_without_gradients_gives_the_same_loss_and_computes_no_gradient(monkeypatch):
    from gpt2zh.training import chunked_loss

    plain, chunked = _pair()
    ids, labels = _batch()
    asked = []
    real = chunked_loss._chunks
    monkeypatch.setattr(chunked_loss, "_chunks", lambda *args, want_grads: asked.append(want_grads) or
                        real(*args, want_grads=want_grads))
    with torch.no_grad():
        expected = plain(input_ids=ids, labels=labels).loss
        output = chunked(input_ids=ids, labels=labels)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert output.logits is None and output.loss.grad_fn is None  # no logits were kept for anyone
    assert asked == [False]  # the evaluation pays for the loss only


def test_without_labels_the_model_is_transformers_own_so_generation_is_unchanged():
    plain, chunked = _pair()
    ids, _ = _batch()
    torch.testing.assert_close(chunked(input_ids=ids).logits, plain(input_ids=ids).logits)
    prompt = ids[:1, :5]
    assert torch.equal(chunked.generate(prompt, max_new_tokens=6, do_sample=False),
                       plain.generate(prompt, max_new_tokens=6, do_sample=False))


def test_the_saved_model_is_a_plain_gpt2_that_loads_without_this_package(tmp_path):
    _, chunked = _pair()
    chunked.save_pretrained(tmp_path)
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert loaded.config.architectures == ["GPT2LMHeadModel"] and "forward" not in vars(loaded)
    torch.testing.assert_close(loaded.transformer.wte.weight, chunked.transformer.wte.weight)


def test_the_functional_loss_takes_the_lm_heads_input_and_shifts_the_labels_itself():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    labels = torch.tensor([[1, 2, 3, 4, 5], [6, 7, -100, 9, 10]])
    expected = torch.nn.functional.cross_entropy((hidden @ weight.T)[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(causal_lm_loss(hidden, weight, labels), expected)


@pytest.mark.parametrize(("device", "installed", "kernel"), [
    ("cuda", True, "liger"), ("cuda", False, "pytorch"), ("cpu", True, "pytorch"), ("cpu", False, "pytorch")])
def test_liger_s_fused_kernel_is_used_only_on_cuda_where_it_is_installed(device, installed, kernel):
    assert loss_kernel(device, installed) == kernel

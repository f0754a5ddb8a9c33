"""Decoding with MKL-packed weights: same tokens as plain decoding, layers restored, clean fallback."""

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from memoryr.training.packed_decode import mkl_packing_available, packed_generate, packed_linears, packing_fallback

needs_mkl = pytest.mark.skipif(not mkl_packing_available(), reason="this PyTorch build has no MKL packed linear")


@pytest.fixture(scope="module")
def model(tiny_model_path):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


def test_fallback_says_why_when_packing_cannot_be_used(model):
    assert packing_fallback(model, available=True) is None
    assert "no MKL packed linear" in packing_fallback(model, available=False)
    bf16 = torch.nn.Linear(4, 4).to(torch.bfloat16)
    assert "needs fp32 weights on CPU (got torch.bfloat16 on cpu)" in packing_fallback(bf16, available=True)


@needs_mkl
def test_packed_linear_computes_the_plain_product_and_is_restored():
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(8, 1, 64)
    with packed_linears(linear, rows=8):
        packed = linear(x)
        other_rows = linear(torch.randn(3, 5, 64))  # not the packed row count: MKL's plain product
        assert "forward" in linear.__dict__
    assert other_rows.shape == (3, 5, 96)
    torch.testing.assert_close(packed, torch.nn.functional.linear(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)
    assert "forward" not in linear.__dict__  # the class's forward again
    with pytest.raises(RuntimeError, match="boom"), packed_linears(linear, rows=8):
        raise RuntimeError("boom")
    assert "forward" not in linear.__dict__


@needs_mkl
@pytest.mark.parametrize("sample", [False, True])
def test_packed_generation_gives_the_plain_tokens(model, sample):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (8, 12), generator=g)
    mask = torch.ones_like(ids)
    config = GenerationConfig(max_new_tokens=10, do_sample=sample, temperature=1.0, top_k=0, top_p=1.0,
                              pad_token_id=0, eos_token_id=None)
    torch.manual_seed(3)
    plain = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    torch.manual_seed(3)
    packed = packed_generate(model.generate, model, input_ids=ids, attention_mask=mask, generation_config=config)
    assert torch.equal(packed, plain)
    assert all("forward" not in m.__dict__ for m in model.modules())

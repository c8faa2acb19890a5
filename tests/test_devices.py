"""Where a model runs: `from_pretrained(device=, dtype=)` and `--device/--dtype` on every command that
loads one. CPU is the default and what CI runs; the GPU tests run where torch sees CUDA."""
from __future__ import annotations

import pytest
import torch

from anymal import AnyMAL
from anymal.cli import main
from anymal.devices import resolve_device
from anymal.errors import ConfigError
from anymal.model.generation import GenerationSettings

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def _ask(image):
    return [{"role": "user", "content": [{"type": "image", "path": str(image)}, {"type": "text", "text": "What is it?"}]}]


def test_devices_resolve_or_say_why_not():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") and resolve_device("cpu") == torch.device("cpu")
    for bad, why in (("tpu", "expected auto, cpu, cuda"), ("cuda:x", "expected auto, cpu, cuda")):
        with pytest.raises(ConfigError, match=why):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
            resolve_device("cuda")


def test_a_bfloat16_llm_answers_like_the_float32_one_within_rounding(tiny_checkpoint, images):
    fp32 = AnyMAL.from_pretrained(tiny_checkpoint, device="auto")
    bf16 = AnyMAL.from_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert fp32.llm.dtype == torch.float32 and bf16.llm.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in bf16.projectors.parameters())  # adapters keep their precision
    with torch.no_grad():
        a, b = ((p := m.prepare([_ask(images[0])]), m.llm.model(inputs_embeds=p.embeds, attention_mask=p.mask))[1]
                .logits[0, -1].float() for m in (fp32, bf16))
    assert torch.allclose(a, b, atol=0.1 * a.abs().max().item())
    assert isinstance(bf16.chat(_ask(images[1]), max_new_tokens=4), str)
    with pytest.raises(ConfigError, match="dtype 'float8'"):
        AnyMAL.from_pretrained(tiny_checkpoint, dtype="float8")


def test_every_command_that_loads_a_model_takes_device_and_dtype(tiny_checkpoint, images, capsys):
    assert main(["chat", "--model", str(tiny_checkpoint), "--device", "cpu", "--dtype", "bfloat16", "--image",
                 str(images[0]), "What is it?", "--max-new-tokens", "3"]) == 0
    if not torch.cuda.is_available():
        assert main(["chat", "--model", str(tiny_checkpoint), "--device", "cuda", "Hi"]) == 2
        assert "torch sees no CUDA GPU" in capsys.readouterr().err
    for command in (["demo"], ["eval"], ["serve"], ["bind-cache", "x"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        out = capsys.readouterr().out
        assert "--device" in out and "--dtype" in out, command


@gpu
@pytest.mark.gpu
def test_on_a_gpu_the_whole_model_moves_and_batched_answers_equal_single_ones(tiny_checkpoint, images):
    model = AnyMAL.from_pretrained(tiny_checkpoint, device="cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    convs = [_ask(p) for p in images[:3]]
    settings = GenerationSettings(max_new_tokens=6)
    batched = model.generate(convs, settings)
    assert batched == [model.generate([c], settings)[0] for c in convs]

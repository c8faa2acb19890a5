"""Projector shapes, token counts, pooling and output scale."""
import pytest
import torch

from anymal.config import ModalityConfig
from anymal.errors import ConfigError
from anymal.projectors import build_projector
from anymal.projectors.base import pool_tokens


@pytest.mark.parametrize("kind", ["linear", "mlp", "resampler"])
@pytest.mark.parametrize("n", [4, 9, None])
def test_shapes_and_token_counts(kind, n):
    cfg = ModalityConfig(projector=kind, num_tokens=n, width=32, heads=4, depth=2)
    p = build_projector(cfg, in_dim=40, in_tokens=49, out_dim=24, embed_rms=0.5, grid=(7, 7))
    y = p(torch.randn(3, 49, 40))
    assert y.shape == (3, n or 49, 24)
    assert p.num_tokens == (n or 49)


@pytest.mark.parametrize("rms", [0.13, 25.3])  # SmolLM2-like and Gemma-like (sqrt(640)-scaled) embeddings
def test_output_matches_llm_embedding_scale(rms):
    p = build_projector(ModalityConfig(projector="mlp", num_tokens=4), 40, 49, 64, rms, (7, 7))
    y = p(torch.randn(8, 49, 40) * 7.0)
    got = float(y.detach().pow(2).mean().sqrt())
    assert got == pytest.approx(rms, rel=0.05)


def test_resampler_can_emit_more_tokens_than_it_reads():
    p = build_projector(ModalityConfig(projector="resampler", num_tokens=64, width=32, heads=4), 40, 16, 24, 1.0, (4, 4))
    assert p(torch.randn(2, 16, 40)).shape == (2, 64, 24)


def test_pooling_is_spatial_on_grids():
    x = torch.zeros(1, 16, 1)
    x[0, [0, 1, 4, 5], 0] = 1.0  # top-left 2x2 block of a 4x4 grid
    y = pool_tokens(x, 4, (4, 4))
    assert y[0, :, 0].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_linear_refuses_to_invent_tokens():
    with pytest.raises(ConfigError, match="num_tokens=64 is more than the encoder's 16"):
        build_projector(ModalityConfig(projector="linear", num_tokens=64), 40, 16, 24, 1.0, (4, 4))


@pytest.mark.parametrize("kind", ["linear", "mlp", "resampler"])
def test_token_count_is_proportional_to_the_real_length(kind):
    # a Whisper-like encoder: 1500 frames for a padded 30 s window, 10 output tokens for a full one
    p = build_projector(ModalityConfig(projector=kind, num_tokens=10, width=32, heads=4), 40, 1500, 24, 1.0, None)
    assert [p.tokens_for(n) for n in (1500, 150, 151, 1)] == [10, 1, 2, 1]
    assert p(torch.randn(2, 300, 40)).shape == (2, 2, 24)  # a 6 s clip
    with pytest.raises(ValueError, match="at most 1500"):
        p.tokens_for(1501)


def test_video_tokenwise_pooling_keeps_frames_apart():
    p = build_projector(ModalityConfig(projector="linear", num_tokens=4), 1, 4 * 16, 1, 1.0, (4, 4), frames=4)
    with torch.no_grad():
        p.proj.weight.fill_(1.0), p.proj.bias.zero_()
    x = torch.arange(4.0).repeat_interleave(16).reshape(1, 64, 1)  # frame f is all f
    assert p.project(x, 4)[0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="multiple of the 4 video frames"):
        build_projector(ModalityConfig(projector="mlp", num_tokens=9), 8, 64, 8, 1.0, (4, 4), frames=4)


def test_resampler_knows_which_frame_a_patch_came_from():
    p = build_projector(ModalityConfig(projector="resampler", num_tokens=4, width=8, heads=2), 8, 2 * 9, 8, 1.0,
                        (3, 3), frames=2)
    pos = p.positions(18)
    assert pos.shape == (18, 8)
    assert torch.allclose(pos[9] - pos[0], (p.frame_pos[1] - p.frame_pos[0])[0])  # same patch, next frame


def test_gradients_reach_projector_only(tiny_model, images):
    msgs = [[{"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What?"}]},
             {"role": "assistant", "content": "A frog."}]]
    batch = tiny_model.processor.collate([tiny_model.processor.encode(m) for m in msgs])
    from anymal.train.stages import apply_stage

    params = apply_stage(tiny_model, "align")
    tiny_model(batch).loss.backward()
    assert params and all(p.grad is not None for p in params)
    assert all(p.grad is None for p in tiny_model.llm.parameters())
    assert all(p.grad is None for p in tiny_model.encoders.parameters())


def test_backbones_stay_frozen_and_in_eval_mode(tiny_model):
    tiny_model.train()
    assert not tiny_model.llm.training and not tiny_model.llm.model.training
    assert not any(e.training for e in tiny_model.encoders.values())
    assert tiny_model.projectors.training
    assert not any(p.requires_grad for p in tiny_model.llm.parameters())
    assert not any(p.requires_grad for p in tiny_model.encoders.parameters())

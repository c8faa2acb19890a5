"""Shared fixtures: tiny random backbones (no weights, no network, seconds) and small real inputs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from anymal.config import LLMConfig, ModalityConfig, ModelConfig  # noqa: E402
from anymal.encoders.base import Encoder  # noqa: E402
from anymal.encoders.media import describe, letterbox, load_image  # noqa: E402
from anymal.errors import InputError  # noqa: E402
from anymal.registry import ENCODERS  # noqa: E402

TESTS = Path(__file__).resolve().parent
HANG_S = 300  # no child process of a test runs near this long (the longest: ~30 s); one that does is hung
# Python code that sees the tiny test encoders, for child processes (`python -c PRELUDE + code`). A child still
# running after HANG_S prints every thread's stack and exits, so a hang fails its test and shows where it hung.
PRELUDE = (f"import sys, faulthandler; faulthandler.dump_traceback_later({HANG_S}, exit=True); "
           f"sys.path.insert(0, {str(TESTS)!r}); import conftest; ")
LAUNCH = PRELUDE + "from anymal.cli import main; sys.exit(main(sys.argv[1:]))"  # the anymal CLI
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]  # + a script


def run_child(cmd: list[str], env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """A test's child process, bounded; with `ok`, a failure shows the child's stderr."""
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S + 60)
    except subprocess.TimeoutExpired as e:  # torchrun's own agent hung (its workers give up by themselves)
        pytest.fail(f"{' '.join(cmd)} hung; its stderr ends:\n{(e.stderr or b'')[-3000:]!r}")
    if ok:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def run_python(code: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """`python -c code` in a child process that sees the tiny test encoders (see `run_child`)."""
    return run_child([sys.executable, "-c", PRELUDE + code], env, ok)


def run_cli(*args: str, env: dict[str, str] | None = None, torchrun: Path | None = None,
            ok: bool = True) -> subprocess.CompletedProcess:
    """`anymal ARGS` in a child process (under torchrun with 2 processes when `torchrun` names a script path
    to write the launcher to); see `run_child`."""
    if torchrun is None:
        cmd = [sys.executable, "-c", LAUNCH]
    else:
        torchrun.write_text(LAUNCH.replace("; ", "\n"))
        cmd = [*TORCHRUN, str(torchrun)]
    return run_child([*cmd, *args], env, ok)


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = ["What is this? A frog. A duck on a pond. Describe the image briefly.",
          "The quick brown fox jumps over the lazy dog. Hello world, what do you see?"] * 20


class TinyCNN(Encoder):
    """A 2-layer random conv net: 32x32 RGB -> 4x4 grid of 24-d tokens."""

    def __init__(self, name: str, modality: str):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1), nn.AdaptiveAvgPool2d(4))
        self.modality, self.id, self.dim, self.num_tokens, self.grid = modality, name, 24, 16, (4, 4)
        self.preprocess_id = "letterbox32"

    def preprocess(self, item):
        img = letterbox(load_image(item), 32)
        return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255.0

    def forward(self, x):
        return self.net(x).flatten(2).transpose(1, 2)


class TinySeq(Encoder):
    """A random 1-D conv over a mono signal padded to 64 samples: 16 tokens, 1 per 4 real samples."""

    window = 64

    def __init__(self, name: str, modality: str):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Conv1d(1, 12, 4, 4)
        self.modality, self.id, self.dim, self.num_tokens = modality, name, 12, 16
        self.preprocess_id = "pad64"

    def load(self, item):
        x = torch.as_tensor(np.load(item) if isinstance(item, (str, Path)) else item, dtype=torch.float32)
        if not 0 < len(x) <= self.window:
            raise InputError(f"{describe(item)}: expected 1 to {self.window} samples, got {len(x)}")
        return torch.nn.functional.pad(x, (0, self.window - len(x)))[None], -(-len(x) // 4)

    def preprocess(self, item):
        return self.load(item)[0]

    def forward(self, x):
        return self.net(x).transpose(1, 2)


for _name, _cls in (("tiny-cnn", TinyCNN), ("tiny-seq", TinySeq)):
    if _name not in ENCODERS:
        ENCODERS.register(_name)(_cls)


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHATML
    return fast


def save_tiny_llama(path: Path, hidden: int = 32, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
                      initializer_range=0.3)  # large init: varied, non-degenerate random outputs
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def tiny_config(llm_dir: Path, projector: str = "mlp", num_tokens: int | None = 4) -> ModelConfig:
    return ModelConfig(llm=LLMConfig(id=str(llm_dir), max_length=256),
                       modalities={"image": ModalityConfig(encoder="tiny-cnn", projector=projector,
                                                           num_tokens=num_tokens, width=32, heads=4)})


@pytest.fixture
def tiny_model(tiny_llm_dir):
    from anymal import AnyMAL

    torch.manual_seed(0)
    return AnyMAL.from_config(tiny_config(tiny_llm_dir))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_llm_dir, tmp_path_factory) -> Path:
    """`tiny_model`'s configuration saved as a checkpoint directory (for commands that load one)."""
    from anymal import AnyMAL

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    AnyMAL.from_config(tiny_config(tiny_llm_dir)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    """A few small real-looking images: distinct colours and shapes."""
    d = tmp_path_factory.mktemp("imgs")
    out = []
    for i, color in enumerate([(200, 30, 30), (30, 160, 40), (20, 40, 200), (230, 200, 20)]):
        img = Image.new("RGB", (48 + 8 * i, 40), (255, 255, 255))
        img.paste(color, (4 + i, 4, 30 + 2 * i, 30))
        p = d / f"img{i}.png"
        img.save(p)
        out.append(p)
    return out


@pytest.fixture(scope="session")
def default_model():
    """The shipped default checkpoint with the real backbones (integration tests only)."""
    from anymal import AnyMAL

    return AnyMAL.from_pretrained()


@pytest.fixture(scope="session")
def every_modality(tiny_llm_dir):
    """A tiny LLM with every modality's real loader behind it (tiny-cnn for pictures and frames)."""
    from anymal import AnyMAL

    small = dict(projector="linear", num_tokens=2)
    torch.manual_seed(0)
    return AnyMAL.from_config(ModelConfig(llm=LLMConfig(id=str(tiny_llm_dir), max_length=256), modalities={
        "image": ModalityConfig(encoder="tiny-cnn", **small), "video": ModalityConfig(encoder="tiny-cnn", frames=2, **small),
        "audio": ModalityConfig(encoder="whisper-tiny.en", **small), "imu": ModalityConfig(encoder="imu-cnn", **small),
        "points": ModalityConfig(encoder="pointnet", **small)}))


@pytest.fixture
def server(tiny_model):
    """The tiny model behind a live OpenAI-compatible server (tests/serving.py)."""
    from serving import Server

    with Server(tiny_model) as s:
        yield s

"""Where a model runs: `--device auto|cpu|cuda[:N]|mps` and `--dtype float32|bfloat16` for every
command that loads one. CPU and float32 are the defaults and the tested path; `auto` picks CUDA when
torch sees a GPU."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "bfloat16", "float16")  # the frozen LLM's weights; encoders and projectors stay float32
# how answers are decoded (anymal/llm/fast.py): auto = fast where it covers the LLM, else transformers
DECODERS = ("auto", "fast", "fast-q4", "transformers")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """A usable torch device for `name` (None or "auto": CUDA when present, else CPU), or a
    ConfigError saying why it cannot be used."""
    import torch  # here, not at import: the CLI parses its flags before the model stack loads

    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: torch sees no CUDA GPU here (torch {torch.__version__}); use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: the MPS backend is not available here; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def device_args(p) -> None:
    """--device, --dtype and --decoder on a parser (read by `AnyMAL.from_pretrained(device=, dtype=, decoder=)`)."""
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (default), auto (CUDA when present), cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=DTYPES, help="the LLM's weights (default: the checkpoint's own, float32)")
    p.add_argument("--decoder", choices=DECODERS, default="auto",
                   help="auto (default: fast where it covers the LLM), fast (same answers as transformers, "
                        "faster), fast-q4 (4-bit weights: llama.cpp's speed, answers may differ), transformers")


def check_decoder(decoder: str) -> str:
    if decoder not in DECODERS:
        raise ConfigError(f"decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
    return decoder


def check_dtype(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return dtype

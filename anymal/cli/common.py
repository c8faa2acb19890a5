"""What the `anymal` subcommands share: loading a checkpoint, generation flags."""
from __future__ import annotations

import argparse


def load_model(a: argparse.Namespace, lazy: bool = False):
    """The checkpoint --model (default: the shipped adapters) on --device in --dtype, decoding with
    --decoder; `lazy`: each modality built on first use (model/lazy.py)."""
    from ..model.anymal import AnyMAL

    return AnyMAL.from_pretrained(a.model, device=a.device, dtype=a.dtype, revision=a.revision, decoder=a.decoder,
                                  lazy=lazy)


def model_args(p: argparse.ArgumentParser) -> None:
    """--model, --device and --dtype: where a command's model comes from and where it runs."""
    from ..devices import device_args

    p.add_argument("--model", help="checkpoint directory or Hugging Face Hub id (default: the shipped adapters)")
    p.add_argument("--revision", help="with a Hub id: the branch, tag or commit")
    device_args(p)


def generation_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """Generation flags whose defaults are GenerationSettings' own (the API's and the server's too)."""
    from ..model.settings import GenerationSettings

    d = GenerationSettings()
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty, help="1 = off")
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")


def settings(a):
    from ..model.settings import GenerationSettings

    return GenerationSettings(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                              repetition_penalty=a.repetition_penalty, seed=a.seed, stop=a.stop or [])

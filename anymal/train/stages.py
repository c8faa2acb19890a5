"""Named training stages and the freeze plan each one implies.

`align` (AnyMAL / LLaVA stage 1): frozen encoders and frozen LLM, only the projectors learn.
A recipe's `freeze` list re-freezes named components on top of the stage. The plan is applied,
then printed and saved as a table so a run states exactly what trained.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import ConfigError

STAGES: dict[str, Callable[[nn.Module], list[str]]] = {}


def stage(name: str):
    def deco(fn):
        STAGES[name] = fn
        return fn
    return deco


@stage("align")
def _align(model) -> list[str]:
    return [f"projectors.{m}" for m in model.projectors]


def apply_stage(model, name: str, freeze: list[str] | tuple[str, ...] = ()) -> list[nn.Parameter]:
    """Freeze everything, unfreeze the stage's components, then re-freeze the named overrides
    (e.g. `projectors.image` to keep a trained image adapter while others learn); return what trains."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
    model.requires_grad_(False)
    for comp in STAGES[name](model):
        model.get_submodule(comp).requires_grad_(True)
    for comp in freeze:
        try:
            model.get_submodule(comp).requires_grad_(False)
        except AttributeError:
            names = [f"projectors.{m}" for m in model.projectors]
            raise ConfigError(f"freeze: no component {comp!r}; e.g. {', '.join(names)}") from None
    return [p for p in model.parameters() if p.requires_grad]


def plan_table(model) -> str:
    rows = [("component", "trainable", "params", "dtype")]
    comps = [("llm", model.llm)]
    comps += [(f"encoders.{m}", e) for m, e in model.encoders.items()]
    comps += [(f"projectors.{m}", p) for m, p in model.projectors.items()]
    for name, mod in comps:
        ps = list(mod.parameters())
        n = sum(p.numel() for p in ps)
        ntrain = sum(p.numel() for p in ps if p.requires_grad)
        flag = "yes" if ntrain == n and n else ("partly" if ntrain else "frozen")
        rows.append((name, flag, f"{n:,}", str(ps[0].dtype).replace("torch.", "") if ps else "-"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)

"""Named training stages: which components learn, and what the checkpoint then has to hold.

    align          projectors only, on captions             (AnyMAL / LLaVA stage 1)
    instruct-proj  projectors only, on instruction data     (AnyMAL's stage-2 variant 1)
    instruct       projectors + LoRA on the LLM             (AnyMAL's stage-2 variant 2)
    full           projectors + every LLM weight            (LLaVA stage 2)
    bind           projectors (bind heads), InfoNCE vs captions (ImageBind-LLM's joint space)
    bind-inject    bind network + gates, next-token loss    (ImageBind-LLM's training)

Components are named `projectors`, `projectors.<modality>`, `projectors.<modality>.<part>` (one part of
a modality's projector: a perceiving projector's `main` patch projector or `words`), `encoders.<modality>`,
`llm`, `llm.lora`, `bind` (bind network + gates).
A recipe's `train` list adds components, its `freeze` list removes them (applied last), so
`freeze: [projectors.image]` keeps a trained image adapter while the others learn. The resulting
plan is printed and saved as a table so a run states exactly what trained.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..llm.lora import has_lora, lora_parameters
from ..llm.quantize import weight_bytes
from ..registry import STAGES


@dataclass(frozen=True)
class Stage:
    name: str
    trains: tuple[str, ...]
    about: str
    needs_lora: bool = False  # the model is built with LoRA layers (ModelConfig.lora)
    saves_llm: bool = False  # the checkpoint holds the whole LLM, not only adapters
    objective: str = "lm"  # lm: next-token loss on assistant tokens; bind: InfoNCE of bind heads vs captions


def _register(name: str, trains: tuple[str, ...], about: str, **kw) -> None:
    STAGES.register(name)(lambda n: Stage(n, trains, about, **kw))


_register("align", ("projectors",), "AnyMAL/LLaVA stage 1 (captions): only the projectors learn")
_register("instruct-proj", ("projectors",), "AnyMAL stage 2, variant 1 (instructions): only the projectors learn")
_register("instruct", ("projectors", "llm.lora"), "AnyMAL stage 2, variant 2: projectors + LoRA on the LLM",
          needs_lora=True)
_register("full", ("projectors", "llm"), "LLaVA stage 2: projectors + every LLM weight", saves_llm=True)
_register("bind", ("projectors",), "ImageBind-LLM joint space: bind heads learn (InfoNCE vs captions' MiniLM vectors)",
          objective="bind")
_register("bind-inject", ("bind",), "ImageBind-LLM: bind network + zero-init gates learn (next-token loss)")


def get_stage(name: str) -> Stage:
    return STAGES.build(name)


def component_names(model) -> list[str]:
    names = ["llm"] + (["llm.lora"] if has_lora(model.llm) else []) + ["projectors"]
    names += [f"projectors.{m}" for m in model.projectors] + [f"encoders.{m}" for m in model.encoders]
    names += ["bind"] if model.bind is not None else []
    return names


def component(model, name: str) -> list[nn.Parameter]:
    """The parameters behind a component name; unknown names list the valid ones."""
    if name == "llm.lora":
        params = list(lora_parameters(model.llm).values())
        if params:
            return params
    elif name == "bind" and model.bind is not None:
        return list(model.bind.parameters())
    elif (name in ("llm", "projectors") or name.split(".")[0] in ("projectors", "encoders") and name.count(".") == 1
          or name.startswith("projectors.") and name.count(".") == 2):
        try:
            return list(model.get_submodule(name).parameters())
        except AttributeError:
            pass
    hint = " (the model has no LoRA layers: set model.lora or use stage instruct)" if name == "llm.lora" else ""
    raise ConfigError(f"no component {name!r}{hint}; components: {', '.join(component_names(model))}")


def apply_stage(model, name: str, freeze: list[str] | tuple[str, ...] = (),
                train: list[str] | tuple[str, ...] = ()) -> list[nn.Parameter]:
    """Freeze everything, unfreeze the stage's and `train`'s components, re-freeze `freeze`; return what trains."""
    st = get_stage(name)
    if st.needs_lora and not has_lora(model.llm):
        raise ConfigError(f"stage {name!r} trains LoRA layers, but the model has none: set model.lora "
                          "(rank, alpha, dropout, target_modules) in the recipe")
    model.requires_grad_(False)
    for comp in (*st.trains, *train):
        for p in component(model, comp):
            p.requires_grad_(True)
    for comp in freeze:
        for p in component(model, comp):
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"stage {name!r} with freeze={list(freeze)} leaves nothing to train")
    return params


def plan_rows(model) -> list[tuple[str, str, int, str, int]]:
    """(component, trainable yes/partly/frozen, parameters, dtype, bytes) per component."""
    lora = set(map(id, lora_parameters(model.llm).values()))
    comps = [("llm", [p for p in model.llm.parameters() if id(p) not in lora])]
    if lora:
        comps.append(("llm.lora", [p for p in model.llm.parameters() if id(p) in lora]))
    comps += [(f"encoders.{m}", list(e.parameters())) for m, e in model.encoders.items()]
    comps += [(f"projectors.{m}", list(p.parameters())) for m, p in model.projectors.items()]
    comps += [("bind", list(model.bind.parameters()))] if model.bind is not None else []
    rows = []
    for name, ps in comps:
        n = sum(p.numel() for p in ps)
        ntrain = sum(p.numel() for p in ps if p.requires_grad)
        flag = "yes" if ntrain == n and n else ("partly" if ntrain else "frozen")
        dtypes = sorted({_dtype(p) for p in ps}) or ["-"]
        rows.append((name, flag, n, "/".join(dtypes), weight_bytes(ps)))
    return rows


def _dtype(p) -> str:
    inner = getattr(p, "qtype", None)  # quanto's quantized weights report their storage type
    return inner.name if inner is not None else str(p.dtype).replace("torch.", "")


def plan_table(model) -> str:
    rows = [("component", "trainable", "params", "dtype", "MB")]
    plan = plan_rows(model)
    rows += [(c, f, f"{n:,}", d, f"{b / 1e6:.1f}") for c, f, n, d, b in plan]
    total = sum(r[2] for r in plan)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    lines.append(f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)")
    return "\n".join(lines)

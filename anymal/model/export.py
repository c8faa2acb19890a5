"""`anymal export --merge`: fold a checkpoint's LoRA layers into its LLM and write a standalone one.

The result is an ordinary anymal checkpoint whose LLM lives beside it (`<out>/llm`, a plain Hugging
Face directory usable by any tool) and whose manifest has no LoRA: it loads with
`AnyMAL.from_pretrained(out)`, nothing else needed, and runs without peft's extra matmuls.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..llm.lora import has_lora, merge_lora
from .anymal import AnyMAL


def export_merged(src: str | Path, out: str | Path) -> Path:
    model = AnyMAL.from_pretrained(src)
    if not has_lora(model.llm):
        raise CheckpointError(f"{src}: no LoRA layers to merge (stage {model.stage!r}); "
                              "only `instruct` checkpoints need --merge")
    merge_lora(model.llm)
    model.config.lora = None
    model.lineage = model.lineage + [{"export": "merge", "from": str(src)}]
    return model.save_pretrained(out, stage=model.stage, with_llm=True)

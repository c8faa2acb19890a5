"""What makes a checkpoint readable outside anymal: a `config.json` with a `model_type` (the Hub's and
transformers' convention for telling what a folder holds), a model card (`README.md`: base LLM, encoders,
data, recipe, evaluation, licences), and LoRA layers in PEFT's own format (`lora/adapter_config.json` +
`lora/adapter_model.safetensors`, loadable with `peft.PeftModel.from_pretrained(base_llm, "<ckpt>/lora")`).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..paths import temp_beside

MODEL_TYPE = "anymal"
PEFT_DIR = "lora"
EVAL_FILE = "eval.json"  # {task: {score: value}} a run may leave beside the weights for the card's table


def hf_config(manifest: dict) -> dict:
    return {"model_type": MODEL_TYPE, "architectures": ["AnyMAL"], "anymal_version": manifest.get("anymal_version"),
            "stage": manifest["stage"], "llm": manifest["llm"]["id"],
            "modalities": {m: {"encoder": r["encoder"]["id"], "projector": r["projector"]["kind"],
                               "num_tokens": r["projector"]["num_tokens"]} for m, r in manifest["modalities"].items()}}


def _eval_table(path: Path) -> list[str]:
    f = path / EVAL_FILE
    if not f.is_file():
        return ["No evaluation was recorded with this checkpoint: run `anymal eval --model <this folder>` "
                "(docs/evaluation.md)."]
    rows = ["| task | score | value |", "|---|---|---|"]
    for task, scores in json.loads(f.read_text()).items():
        rows += [f"| {task} | {k} | {v:.3f} |" for k, v in scores.items() if isinstance(v, (int, float))]
    return rows


def model_card(manifest: dict, path: Path) -> str:
    llm, cfg = manifest["llm"], manifest["config"]
    lines = ["---", "library_name: anymal", f"base_model: {llm['id']}" if "/" in llm["id"] else f"# base LLM: {llm['id']}",
             "tags: [anymal, multimodal, " + ", ".join(sorted(manifest["modalities"])) + "]", "---", "",
             f"# anymal checkpoint (stage `{manifest['stage']}`)", "",
             "Adapters that let a frozen LLM read " + ", ".join(sorted(manifest["modalities"])) + " input "
             f"([anymal](https://pypi.org/project/anymal/) {manifest.get('anymal_version', '')}).", "",
             "## Backbones", "", "| part | model | trained here |", "|---|---|---|",
             f"| LLM | `{llm['id']}` (hidden {llm['hidden_size']}) | "
             + ("LoRA layers (`lora/`, PEFT format)" if cfg.get("lora") else "no (frozen)") + " |"]
    for m, rec in manifest["modalities"].items():
        p = rec["projector"]
        lines.append(f"| {m} encoder | `{rec['encoder']['id']}` ({rec['encoder']['dim']}-d) | no (frozen) |")
        lines.append(f"| {m} projector | {p['kind']}, {p['num_tokens']} tokens, {p['params']:,} parameters | yes |")
    lines += ["", "## Training", ""]
    for step in manifest.get("lineage", []) or [{}]:
        data = step.get("data", "not recorded")
        lines.append(f"* stage `{step.get('stage', manifest['stage'])}`, {step.get('steps', '?')} steps, seed "
                     f"{step.get('seed', '?')}, data: {data}")
    recipe = cfg.get("recipe") if isinstance(cfg, dict) else None
    lines += [f"* recipe: `{recipe}`" if recipe else "* recipe: see `anymal_config.json` (`config`)", "",
              "## Evaluation", "", *_eval_table(path), "", "## Use", "", "```python",
              "from anymal import AnyMAL", "", 'model = AnyMAL.from_pretrained("<this folder or Hub id>")',
              'print(model.chat("What is this?", image="photo.jpg"))', "```", "",
              "## Licences", "",
              f"The LLM (`{llm['id']}`) and each encoder keep their own licences; the datasets used are listed with "
              "their licences in anymal's docs/licences.md. The adapter weights are released under the licence of "
              "the repository that publishes them.", ""]
    return "\n".join(lines)


def write_travel_files(path: Path, manifest: dict, llm_model) -> None:
    """config.json and README.md beside the weights (a card a user wrote is kept), and the LoRA layers
    in PEFT's format when the LLM has them."""
    (path / "config.json").write_text(json.dumps(hf_config(manifest), indent=2))
    card = path / "README.md"
    if not card.is_file() or card.read_text().startswith("---\nlibrary_name: anymal"):
        tmp = temp_beside(card)
        tmp.write_text(model_card(manifest, path))
        tmp.replace(card)
    if hasattr(llm_model, "peft_config"):
        llm_model.save_pretrained(str(path / PEFT_DIR))

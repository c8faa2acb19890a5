"""What a checkpoint holds of a model: its adapter weights (projectors, bind network, LoRA layers) and
the facts about its backbones, saved and loaded; adapters started from another checkpoint's.

A mixin of `AnyMAL` (model/anymal.py), which keeps construction and the forward.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .._version import __version__
from ..config import to_dict
from ..errors import CheckpointError
from ..llm import LOCAL_LLM, save_llm_dir
from ..llm.lora import LORA_MARK, has_lora
from .card import write_travel_files
from .checkpoint import check_facts, read_manifest, read_weights, write_checkpoint


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a possibly sharded (FSDP2 DTensor) one."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class AdapterWeights:
    """Needs from the model: config, llm, encoders, projectors, bind, visual_cache, stage, lineage,
    build_all, state_dict / load_state_dict."""

    def init_adapters_from(self, path: str | Path, only: list[str] | None = None) -> list[str]:
        """Start the projectors of the modalities this model shares with checkpoint `path` from its weights.

        Used to add modalities to a trained model (e.g. keep the image adapter, train audio): shared
        modalities are fact-checked like a full load; the others keep their fresh initialisation.
        `only` restricts it to the named modalities (each must be in both).
        """
        manifest = read_manifest(path)
        shared = [m for m in manifest["modalities"] if m in self.projectors]
        if only is not None:
            missing = sorted(set(only) - set(shared))
            if missing:
                raise CheckpointError(f"{path}: init_modalities {missing} not shared by the checkpoint "
                                      f"and the model being built (shared: {', '.join(shared) or 'none'})")
            shared = [m for m in shared if m in only]
        # a projector may adopt another kind's weights (tiles <- mlp: a superset, extras start at zero)
        adopted = {m for m in shared if manifest["modalities"][m]["projector"]["kind"] != self.config.modalities[m].projector
                   and manifest["modalities"][m]["projector"]["kind"] in getattr(self.projectors[m], "adopts", ())}
        for m in adopted:
            rec, enc = manifest["modalities"][m], self.encoders[m]
            if rec["encoder"]["id"] != getattr(enc, "base_id", enc.id):
                raise CheckpointError(f"{path}: its {m} adapter was trained on {rec['encoder']['id']} features; "
                                      f"{self.config.modalities[m].projector} over {enc.id} cannot adopt it")
        check_facts({**manifest, "modalities": {m: manifest["modalities"][m] for m in shared if m not in adopted}},
                    self.facts(), path)
        state = read_weights(path)
        for m in shared:
            prefix = f"projectors.{m}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                missing, unexpected = self.projectors[m].load_state_dict(sub, strict=False)
            except RuntimeError as e:
                raise CheckpointError(f"{path}: the {m} adapter does not fit the model being built: {e}") from None
            may_lack = set(getattr(self.projectors[m], "optional_keys", ()))
            if m in adopted:  # new parts of the adopting kind start fresh
                may_lack |= set(getattr(self.projectors[m], "extra_keys", ()))
            if set(missing) - may_lack or unexpected:
                raise CheckpointError(f"{path}: the {m} adapter does not fit: missing {missing}, unexpected {unexpected}")
        lora = {k: v for k, v in state.items() if LORA_MARK in k}
        if lora and has_lora(self.llm):  # stage chaining instruct -> instruct keeps the LoRA layers
            want = {k for k in self.state_dict() if LORA_MARK in k}
            if want != set(lora):
                raise CheckpointError(f"{path}: its LoRA layers differ from model.lora (rank or target modules)")
            self.load_state_dict(lora, strict=False)
            shared.append("llm.lora")
        bind = {k[len("bind."):]: v for k, v in state.items() if k.startswith("bind.")}
        if bind and self.bind is not None:  # a trained bind network carries on (bind-inject -> more data)
            try:
                self.bind.load_state_dict(bind, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"{path}: its bind network does not fit model.bind: {e}") from None
            shared.append("bind")
        self.lineage = manifest.get("lineage", [])
        return shared

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trained part a checkpoint stores: every projector, plus the LoRA layers if any.
        (Sharded FSDP2 parameters are gathered: every rank must call this.)"""
        self.build_all()
        return self._adapter_tensors()

    def _adapter_tensors(self) -> dict[str, torch.Tensor]:
        return {k: full_tensor(v) for k, v in self.state_dict().items()
                if k.startswith(("projectors.", "bind.")) or LORA_MARK in k}

    def load_adapter_state(self, state: dict[str, torch.Tensor], path: str | Path) -> None:
        """Load a checkpoint's adapter weights; a modality not built yet gets its own when it is."""
        pending = tuple(f"projectors.{m}." for m in self.projectors.pending())
        self._load_state({k: v for k, v in state.items() if not k.startswith(pending)}, path, "", skip=pending)
        if pending:
            self._checkpoint = (read_manifest(path), state, path)

    def _load_state(self, state: dict[str, torch.Tensor], path: str | Path, prefix: str, skip: tuple = ()) -> None:
        """Load the adapter weights under `prefix` (but those under `skip`), refusing missing or extra ones."""
        want = {k for k in self._adapter_tensors() if k.startswith(prefix) and not k.startswith(skip)}
        optional = {f"projectors.{m}.{k}" for m, p in self.projectors._modules.items() for k in getattr(p, "optional_keys", ())}
        missing, unexpected = sorted(want - set(state) - optional), sorted(set(state) - want)
        if missing or unexpected:
            raise CheckpointError(f"{path}: adapter weights do not fit the model built from its manifest: "
                                  f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                                  f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: adapter weights do not fit the model built from its manifest: {e}") from None

    def facts(self, modalities: list[str] | None = None) -> dict:
        """What a checkpoint records about its backbones and adapters (for `modalities`: default all,
        which builds any not built yet)."""
        return {
            "llm": self.llm.facts(),
            "modalities": {
                m: {"encoder": self.encoders[m].facts(),
                    "projector": {"kind": self.config.modalities[m].projector,
                                  "num_tokens": self.projectors[m].num_tokens,
                                  "params": sum(x.numel() for x in self.projectors[m].parameters())}}
                for m in (self.projectors if modalities is None else modalities)
            },
            **({"bind": self.bind.facts()} if self.bind is not None else {}),
        }

    def save_pretrained(self, path: str | Path, stage: str | None = None, extra: dict | None = None,
                        with_llm: bool = False, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write manifest + adapter weights; `with_llm` also writes the LLM itself to `<path>/llm`
        (after full fine-tuning, or a LoRA merge) and points the manifest at it (`./llm`)."""
        stage = stage or self.stage
        config, facts = to_dict(self.config), self.facts()
        if with_llm:
            save_llm_dir(self.llm, Path(path) / LOCAL_LLM[2:])
            config["llm"]["id"] = facts["llm"]["id"] = LOCAL_LLM
        manifest = {"anymal_version": __version__, "stage": stage, "lineage": self.lineage,
                    "config": config, **facts, **(extra or {})}
        out = write_checkpoint(path, manifest, self.adapter_state() if state is None else state)
        write_travel_files(out, manifest, self.llm.model)
        if self.visual_cache is not None:
            self.visual_cache.save(out)
        return out

    def push_to_hub(self, repo_id: str, private: bool = False, revision: str | None = None,
                    message: str | None = None) -> str:
        """Save this model (weights, manifest, model card) and upload it to Hub repo `repo_id`; the commit URL."""
        import tempfile

        from .hub import push_checkpoint

        with tempfile.TemporaryDirectory() as d:
            self.save_pretrained(d)
            return push_checkpoint(d, repo_id, private=private, revision=revision, message=message)


"""The training loop (plain PyTorch): a small `Trainer` with AdamW, warm-up + cosine, clipping,
accumulation, seeded, data-parallel under torchrun, resumable from its last saved state.

Each step's loss is the mean over *every* labelled token of the global step (all micro-batches, all
ranks), so the result does not depend on how a step is split across processes or accumulation.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from ..config import TrainConfig, dump_yaml, to_dict
from ..data.dataset import collate
from ..errors import TrainingError
from . import distributed as dist
from .host import keep_freed_memory
from .runlog import RunLog, claim_run_dir
from .sampling import StepSampler
from .steps import StepLoop, seed_everything
from .setup import build_model, check_plan, evaluate_loss, length_grouping, load_data, shared_prefix
from .stages import plan_table
from .state import (load_state, optimizer_state, restore_trainable, rng_state, save_state, set_rng_state,
                    trainable_state)


@dataclass
class RunResult:
    output_dir: Path
    checkpoint: Path
    first_loss: float
    final_loss: float
    initial_val_loss: float | None
    val_loss: float | None
    skipped: int
    steps: int
    nan_steps: int = 0


@dataclass
class RunState:
    """What a run counts across steps; saved with every resumable state (`counters` in resume.pt)."""
    first_loss: float = math.nan
    last_loss: float = math.nan
    initial_val: float | None = None
    val_loss: float | None = None
    seen: int = 0  # samples
    tokens: int = 0  # real tokens
    padded_tokens: int = 0  # batch positions
    seconds: float = 0.0
    nan_steps: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        names = {f.name for f in fields(self)}
        for k, v in state.items():  # a counter added since the save keeps its default
            if k in names:
                setattr(self, k, v)

    def rates(self) -> dict[str, float]:
        return {"samples_per_s": self.seen / self.seconds, "tokens_per_s": self.tokens / self.seconds,
                "padding": self.padded_tokens / self.tokens}  # batch positions per real token, so far


class Trainer(StepLoop):
    """One run of `cfg`: builds the model, data, optimiser, schedule and sampler, then `run` steps it
    to `optim.max_steps`, logging, validating and saving on the way."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, log=print, resume: bool = False,
                 overwrite: bool = False):
        self.cfg, self.progress, self.resuming, self.d = cfg, progress, resume, dist.setup()
        self.log_every, self.eval_every = cfg.log_every, cfg.eval_every
        self.log = log if self.d.main else (lambda *_: None)
        seed_everything(cfg.seed)
        self.out = Path(cfg.output_dir)
        self.stage = check_plan(cfg, self.log)  # a recipe's own faults first, then where it would write
        self.lock = claim_run_dir(self.out, resume, overwrite, self.d.main)
        try:
            self._build(cfg, progress)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Let another run use the run directory (a killed process releases it by itself)."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def _build(self, cfg: TrainConfig, progress: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.d.main:
            dump_yaml(cfg, self.out / "config.yaml")
        self.model = model = build_model(cfg, self.d, self.log)
        if cfg.keep_freed_memory and model.device.type == "cpu":
            keep_freed_memory()
        table = plan_table(model)
        if self.d.main:
            (self.out / "plan.txt").write_text(table + "\n")
        self.log(f"stage {cfg.stage!r} ({self.stage.about}), {self.d.world} process(es):\n{table}")
        self.train_items, self.val_items, self.skipped = load_data(cfg, model, self.d, progress, self.log)
        self.prefix = shared_prefix(cfg, model, self.train_items, self.stage, self.log)
        self.wrapped = dist.wrap(model, self.d, cfg.strategy)
        self.params = [p for p in model.parameters() if p.requires_grad]  # FSDP2 replaced them with sharded ones
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
        self.sched = get_cosine_schedule_with_warmup(self.opt, o.warmup_steps, o.max_steps)
        lengths = [len(p.encoded.input_ids) for p in self.train_items]
        self.sampler = StepSampler(lengths, o.batch_size, o.grad_accum, self.d.world, self.d.rank, cfg.seed,
                                   length_grouping(cfg, lengths, self.log), cfg.data.length_window)
        self.state, self.start, self.t0 = RunState(), 0, time.time()
        self.sharded = self.d.world > 1 and cfg.strategy == "fsdp"
        self.run_entry = {"stage": cfg.stage, "init_from": cfg.init_from, "data": to_dict(cfg.data)["train"], "seed": cfg.seed,
                          **({"recipe": cfg.recipe} if cfg.recipe else {})}

    def resume(self) -> None:
        """Continue from `resume.pt`: weights, optimiser, schedule, sampler, every RNG and the counters."""
        s = load_state(self.out, to_dict(self.cfg))
        restore_trainable(self.model, self.opt, s, self.sharded)
        self.sched.load_state_dict(s["scheduler"])
        self.sampler.load_state_dict(s["sampler"])
        set_rng_state(s["rng"])
        self.start = s["step"]
        self.state.load_state_dict(s["counters"])
        self.log(f"resumed at step {self.start} of {self.cfg.optim.max_steps}")

    def step(self, step: int) -> dict | None:
        """One optimiser step over every micro-batch of every rank: its metrics row, or None when the
        loss was not finite and `on_nan: skip` skipped it."""
        model, st, d = self.model, self.state, self.d
        micro = self.sampler.next_step()
        batches = [collate(model, [self.train_items[i] for i in idx]) for idx in micro]
        objective = self.stage.objective
        n_global, step_tokens, step_padded, step_samples = dist.all_sum(
            [sum(model.count_targets(b, objective) for b in batches), sum(b.num_tokens for b in batches),
             sum(b.attention_mask.numel() for b in batches), sum(len(i) for i in micro)], d)
        self.opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for j, batch in enumerate(batches):
            with dist.no_sync(self.wrapped, j == len(batches) - 1):
                out = self.wrapped(batch, objective, self.prefix)
                # DDP averages gradients over ranks, hence x world: the sum over all ranks / all tokens
                (out.loss_sum * (d.world / n_global)).backward()
            loss_sum += float(out.loss_sum.detach())
        st.tokens, st.padded_tokens, st.seen = st.tokens + step_tokens, st.padded_tokens + step_padded, st.seen + step_samples
        loss = dist.all_sum([loss_sum], d)[0] / n_global
        if not math.isfinite(loss):
            where = ", ".join(self.train_items[i].where for idx in micro for i in idx)
            msg = f"step {step}: non-finite loss ({loss}); samples{' on rank %d' % d.rank if d.world > 1 else ''}: {where}"
            if self.cfg.on_nan == "stop":
                raise TrainingError(msg + " (on_nan: skip would skip such steps)")
            self.log(msg + "; step skipped")
            st.nan_steps += 1
            self.opt.zero_grad(set_to_none=True)
            self.sched.step()
            return None
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm))
        self.opt.step()
        self.sched.step()
        st.first_loss = loss if math.isnan(st.first_loss) else st.first_loss
        st.last_loss = loss
        st.seconds = time.time() - self.t0
        return {"loss": loss, "lr": self.sched.get_last_lr()[0], "grad_norm": gnorm, **st.rates()}

    def postfix(self, row: dict) -> dict:
        return {"loss": f"{row['loss']:.3f}", "lr": f"{row['lr']:.1e}", "samples_s": f"{row['samples_per_s']:.1f}",
                "tok_s": f"{row['tokens_per_s']:.0f}"}

    def after_step(self, step: int) -> None:
        if self.cfg.save_every and step % self.cfg.save_every == 0 and step < self.cfg.optim.max_steps:
            self.checkpoint(step, final=False)  # a killed run resumes here

    def checkpoint(self, step: int, final: bool) -> Path | None:
        """The adapters (and, before the end, the resumable state); every rank takes part, rank 0 writes."""
        model, st, o = self.model, self.state, self.cfg.optim
        weights = trainable_state(model)  # sharded parameters gather here
        adapters = model.adapter_state()
        optim_state = None if final else optimizer_state(model, self.opt, self.sharded)  # gathers too
        if not self.d.main:
            return None
        if not final:
            save_state(self.out, {"step": step, "weights": weights, "optimizer": optim_state,
                                  "scheduler": self.sched.state_dict(), "sampler": self.sampler.state_dict(),
                                  "rng": rng_state(), "counters": st.state_dict(), "config": to_dict(self.cfg)})
            model.lineage.append({**self.run_entry, "steps": step, "partial_of": o.max_steps})  # it may be the one shipped
        training = ({"partial_step": step} if not final else {
            "first_loss": st.first_loss, "final_loss": st.last_loss, "initial_val_loss": st.initial_val,
            "val_loss": st.val_loss, "skipped_samples": self.skipped.total, "nan_steps": st.nan_steps,
            "train_samples": len(self.train_items), "processes": self.d.world, "seconds": round(st.seconds, 1)})
        try:
            return model.save_pretrained(self.out / "checkpoint", stage=self.cfg.stage, with_llm=self.stage.saves_llm,
                                         extra={"training": training}, state=adapters)
        finally:
            if not final:
                model.lineage.pop()

    def validate(self, step: int | None = None) -> dict | None:
        if not self.val_items:
            return None
        self.state.val_loss = evaluate_loss(self.model, self.val_items, self.cfg.optim.batch_size, self.stage.objective)
        return {"val_loss": self.state.val_loss}

    def run(self) -> RunResult:
        cfg, o, st, resume = self.cfg, self.cfg.optim, self.state, self.resuming
        if resume:
            self.resume()
        runlog = RunLog(self.out, self.d.main, self.start if resume else None, plot_every=cfg.plot_every,
                        report_to=tuple(cfg.report_to), config=to_dict(cfg))
        if not resume and self.val_items:
            runlog.write({"step": 0, **self.validate()})
            st.initial_val = st.val_loss
        self.t0 = time.time() - st.seconds
        self.loop(self.start, o.max_steps, runlog, f"train {cfg.stage}", self.progress and self.d.main)
        runlog.close()
        self.model.stage = cfg.stage
        self.model.lineage = self.model.lineage + [{**self.run_entry, "steps": o.max_steps}]
        ckpt = self.checkpoint(o.max_steps, final=True) or self.out / "checkpoint"
        self.wrapped = self.model  # before teardown, which says why
        dist.teardown(self.d)
        self.log(f"done: loss {st.first_loss:.3f} -> {st.last_loss:.3f}"
                 + (f", val loss {st.val_loss:.3f}" if st.val_loss is not None else "") + f"; checkpoint {ckpt}")
        return RunResult(self.out, ckpt, st.first_loss, st.last_loss, st.initial_val, st.val_loss, self.skipped.total,
                         o.max_steps, st.nan_steps)


def train(cfg: TrainConfig, progress: bool = True, log=print, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Run a recipe (see `Trainer`); `resume` continues from the run directory's last saved state,
    `overwrite` replaces an earlier run there (without either, a directory holding a run is refused)."""
    trainer = Trainer(cfg, progress, log, resume, overwrite)
    try:
        return trainer.run()
    finally:
        trainer.release()

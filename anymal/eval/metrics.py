"""Captioning metrics via the pycocoevalcap scorers, called directly.

(`COCOEvalCap.evaluate()` would also run SPICE, which downloads CoreNLP at run time.) METEOR is
pycocoevalcap's bundled meteor-1.5.jar and needs Java (`java` on PATH; scripts/install.sh installs
it): without Java it is left out and the scores say so, instead of failing the whole evaluation. Text is
normalised like the COCO tokenizer does (lower case, punctuation stripped) without its Java step.
CIDEr's IDF comes from the evaluated references, so it is unstable on small sets: report the size.
"""
from __future__ import annotations

import re
import shutil

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge


def coco_normalize(text: str) -> str:
    text = text.lower().replace("’", "'").replace("“", " ").replace("”", " ")
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text))


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    gts = {i: [coco_normalize(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [coco_normalize(p) or "empty"] for i, p in enumerate(predictions)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    scores = {**{f"BLEU-{n}": float(bleu[n - 1]) for n in range(1, 5)}, "CIDEr": float(cider), "ROUGE-L": float(rouge)}
    if shutil.which("java"):
        from pycocoevalcap.meteor.meteor import Meteor

        scores["METEOR"] = float(Meteor().compute_score(gts, res)[0])  # its java process ends with the object
    else:
        scores["METEOR (not computed: needs java on PATH)"] = float("nan")
    return scores


def recall_at_k(similarity, relevant, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Retrieval R@k: the share of queries (rows of `similarity` [Q, N]) whose k best-scored items
    include at least one relevant one (`relevant` [Q, N] booleans). Ties are broken by item index."""
    import torch

    sim, rel = torch.as_tensor(similarity, dtype=torch.float64), torch.as_tensor(relevant, dtype=torch.bool)
    if sim.shape != rel.shape or sim.ndim != 2 or not sim.shape[0]:
        raise ValueError(f"similarity {tuple(sim.shape)} and relevant {tuple(rel.shape)}: expected the same [Q, N], Q > 0")
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    hits = torch.gather(rel, 1, order)
    return {f"R@{k}": float(hits[:, :k].any(1).float().mean()) for k in ks}

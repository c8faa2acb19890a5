"""ImageBind-LLM mechanics: a joint embedding space anchored on MiniLM sentence embeddings, a bind
network whose output is added to every word token in every LLM layer through zero-initialised gates,
and a training-free visual cache that pulls non-image queries towards the image features the bind
network was trained on.

    heads.py      the per-modality bind head, registered as projector kind `bind` (no tokens)
    injection.py  bind network + per-layer zero-init gates, applied with forward hooks
    cache.py      the FAISS visual cache (top-k neighbours, similarity-weighted blend)
    objective.py  the symmetric InfoNCE loss of stage `bind` (inputs vs their captions' MiniLM vectors)
    retrieval.py  zero-shot cross-modal retrieval in the bind space (`anymal eval --task bind-retrieval`)
"""
from . import heads  # noqa: F401  (registers projector kind `bind`)
from .injection import BindInjector, decoder_layers

__all__ = ["BindInjector", "decoder_layers"]

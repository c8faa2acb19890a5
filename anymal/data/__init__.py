"""Datasets: JSONL manifests (LLaVA and messages formats), the training data path and the feature cache;
the real-data builders (`anymal data build NAME`) live in `builders/`."""

"""Datasets: JSONL manifests (LLaVA and messages formats), real-data builders, the feature cache."""

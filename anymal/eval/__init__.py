"""Evaluation: captioning metrics on a manifest, with pinned decoding and written reports."""

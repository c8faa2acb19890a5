"""Library noise that is not the user's business, silenced where it starts."""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager


@contextmanager
def quiet_loading(transformers: bool = True):
    """Hugging Face loading without its per-file progress bars and info lines, and without the
    deprecation warning peft triggers in transformers (`is_gradient_checkpointing`); settings restored after.
    `transformers=False`: a load that may not need transformers at all (llm/lite.py) does not import
    it here (~0.5 s); whatever imports it inside quiets its own load."""
    if not transformers and "transformers" not in sys.modules:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
        return
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()

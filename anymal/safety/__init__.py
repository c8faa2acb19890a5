"""Safety checks (AnyMAL §5): text classifier (text.py), image check (image.py), the guard that
applies them to inputs and streamed outputs (guard.py), `anymal safety` (cli.py)."""

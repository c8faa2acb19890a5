"""Training: named stages (what is frozen), the loop, curves."""

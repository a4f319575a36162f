"""Training: the two-stage recipe (L0 training, projection, fixed-mask finetuning)."""

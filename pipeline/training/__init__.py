"""Stage 3: pretraining a GPT-2 with transformers' Trainer, every seed pitfall guarded."""

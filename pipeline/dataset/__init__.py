"""Stage 2: tokenized documents packed into fixed-length blocks, stored for the Trainer."""

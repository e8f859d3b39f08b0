"""Stage 1: train a SentencePiece tokenizer on the corpus and save it as a Hugging Face fast tokenizer."""

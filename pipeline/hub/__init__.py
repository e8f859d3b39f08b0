"""Stage 4: the trained model, its card and its logs, pushed to a Hugging Face Hub model repository."""

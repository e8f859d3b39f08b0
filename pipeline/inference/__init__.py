"""Using a finished model: scoring held-out text (`gpt2zh evaluate`) and continuing a prompt (`gpt2zh generate`)."""

"""The operator's own GPU boxes running Ollama: one session per node at a time."""

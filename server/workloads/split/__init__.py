"""Split DNN inference (paper 004) on the server: the orchestrator, the Infer
executor that runs tails in slots, and the pure game solver."""

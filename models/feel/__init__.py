"""Federated edge learning (paper 003): the networks of federated rounds, their
flat-vector helpers (gradients, the eq. (2) update, hashes) and the measured
gradient latency with its eq. (9) and eq. (27) fits. Device-safe."""

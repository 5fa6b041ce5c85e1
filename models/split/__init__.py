"""Split DNN inference (paper 004): networks as chains of layers cut at a split
point, per-layer timing on this host and the eq. (5) delay model. Device-safe."""

"""Transfer learning on latent vectors (paper 000): the autoencoder devices train
and the edge CNN the server trains on their latents. Device-safe."""

"""Power meters: one abstract meter, one module per source, a factory."""

"""Transfer learning with JUDBA (paper 000) on the server: the orchestrator and its pure solver."""

"""Networks, datasets and partitioners (torch only)."""

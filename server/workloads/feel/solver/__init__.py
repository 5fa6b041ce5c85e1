"""Batch sizes and TDMA time slots of federated rounds (paper 003). Pure."""

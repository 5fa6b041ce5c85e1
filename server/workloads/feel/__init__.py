"""Federated edge learning (paper 003) on the server: the round loop and its pure solver."""

"""JUDBA (paper 000): uploading decision and bandwidth allocation. Pure."""

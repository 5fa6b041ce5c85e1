"""Split DNN inference as an aggregative game (paper 004). Pure."""

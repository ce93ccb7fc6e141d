"""Dataset tools: the toy dataset generator and its translation score (python -m datasets.toy_score)."""

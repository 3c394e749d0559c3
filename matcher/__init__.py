"""Dual tags, eligibility rules, embeddings, indexes, ranking and batch matching."""

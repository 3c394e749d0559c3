"""Policies, departments, categories, tags and topic columns as curated by staff."""

"""Upstream providers other than the DeepSeek web chat."""

"""Upstream providers beyond the web chat: OpenAI-compatible APIs that serve
some model names, as routes of their own or as fall-backs of the pool."""

"""Structured output (JSON mode): prompt instructions for a response format."""

from __future__ import annotations

from .canonical import ResponseFormat


def format_instructions(fmt: ResponseFormat) -> str:
    """Extra system text asking for JSON; empty for plain text."""
    return ""

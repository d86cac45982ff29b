"""Turning canonical messages into the single upstream prompt string."""

from ds2proxy.prompt.build import build_prompt
from ds2proxy.prompt.dsml import render_tool_calls

__all__ = ["build_prompt", "render_tool_calls"]

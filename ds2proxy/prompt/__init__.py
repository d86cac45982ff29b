"""Turning canonical messages into the single upstream prompt string."""

from ds2proxy.prompt.build import build_prompt
from ds2proxy.prompt.dsml import render_tool_calls
from ds2proxy.prompt.message_text import tool_content_text

__all__ = ["build_prompt", "render_tool_calls", "tool_content_text"]

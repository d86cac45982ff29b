"""Tool calling emulated over a chat model without function calling.

The declared tools go into the prompt with DeepSeek's DSML call syntax
(``prompt``); the model's answer is split, while streaming, into visible
text and canonical tool-call events (``sieve``), with leaked template text
removed (``clean``). Each dialect's tool_choice is parsed in
``ds2proxy.dialects.tool_choice``.
"""

from ds2proxy.toolcall.clean import TextCleaner
from ds2proxy.toolcall.ids import default_call_id
from ds2proxy.toolcall.prompt import build_tool_prompt
from ds2proxy.toolcall.sieve import ToolSieve

__all__ = [
    "TextCleaner",
    "ToolSieve",
    "build_tool_prompt",
    "default_call_id",
]

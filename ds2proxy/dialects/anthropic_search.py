"""The web chat's search as Anthropic's web search server tool blocks.

A request declaring a ``web_search_…`` tool runs with the web chat's own
search on (see :mod:`.anthropic_request`); the pages the answer cites are
answered as that tool's ``server_tool_use`` and ``web_search_tool_result``
blocks, which clients list as the search's sources (Claude Code's WebSearch
shows them as its links). They follow the answer's other blocks: the web
chat names its sources once the answer is written.
"""

from __future__ import annotations

from typing import Any

from ..canonical import Citation


def search_blocks(citations: list[Citation], tool: str, tool_id: str) -> list[dict[str, Any]]:
    """The tool call and its result, one ``web_search_result`` per page the
    answer cites (no encrypted content: nothing here could read it back)."""
    results = [{"type": "web_search_result", "url": c.url, "title": c.title or c.url,
                "encrypted_content": "", "page_age": None}
               for c in sorted(citations, key=lambda c: c.index)]
    return [{"type": "server_tool_use", "id": tool_id, "name": tool, "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results}]


def search_usage(citations: list[Citation]) -> dict[str, Any]:
    """``usage.server_tool_use``: one search request when pages were cited."""
    return {"server_tool_use": {"web_search_requests": 1}} if citations else {}


def search_result_lines(block: dict[str, Any]) -> str:
    """A ``web_search_tool_result`` sent back in history, as the model reads
    it: its pages' titles and addresses (the encrypted page text is Anthropic's
    alone), or the error it holds."""
    content = block.get("content")
    if not isinstance(content, list):
        code = content.get("error_code") if isinstance(content, dict) else None
        return f"[web search failed: {code or 'error'}]"
    pages = [f"- {item.get('title') or item.get('url')}: {item.get('url')}"
             for item in content if isinstance(item, dict) and isinstance(item.get("url"), str)]
    return "\n".join(["[web search results]", *pages])

"""Tool-call blocks as the model writes them, for scripting the fake upstream."""

from __future__ import annotations


def dsml(*calls: tuple[str, dict]) -> str:
    """A call block as the model writes it: one wrapper, one invoke per call."""
    invokes = "".join(
        f'  <|DSML|invoke name="{name}">\n' + "".join(
            f'    <|DSML|parameter name="{k}"><![CDATA[{v}]]></|DSML|parameter>\n'
            for k, v in params.items()) + "  </|DSML|invoke>\n"
        for name, params in calls)
    return f"<|DSML|tool_calls>\n{invokes}</|DSML|tool_calls>"

"""What a chat template is given when a conversation has tools (pure).

A template that knows tools (Hugging Face's convention: it takes a ``tools`` variable, assistant
messages with ``tool_calls`` and ``tool`` messages) gets them as they are; :func:`probe_caps` finds
out once per model whether it does, and whether it wants a call's ``arguments`` as an object (most:
they render it with ``tojson``) or as the JSON string of the OpenAI wire format.

A template without tool support (Gemma 3's, most fallbacks) would drop them. The conversation is
then rewritten into plain turns in the Hermes syntax: the tools are described in the system
message, earlier calls become ``<tool_call>`` text in the assistant's turn, and tool results
become a user turn of ``<tool_response>`` blocks; consecutive turns of one role are merged, since
such templates insist that roles alternate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Render = Callable[..., str]
"""``render(messages, **context)`` → the prompt text; raises when the template refuses."""

_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "pendra_probe_function",
        "description": "probe",
        "parameters": {"type": "object", "properties": {"pendra_probe_arg": {"type": "string"}}},
    },
}


@dataclass(frozen=True)
class TemplateCaps:
    native_tools: bool = False
    object_arguments: bool = True


def probe_caps(render: Render) -> TemplateCaps:
    """What a template does with tools, found by rendering small conversations with it."""
    user = {"role": "user", "content": "hello"}
    try:
        native = "pendra_probe_function" in render([user], tools=[_PROBE_TOOL])
    except Exception:
        native = False
    if not native:
        return TemplateCaps(False)
    for object_arguments in (True, False):
        arguments: Any = {"pendra_probe_arg": "pendra_probe_value"}
        if not object_arguments:
            arguments = json.dumps(arguments)
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "pendra_probe_function", "arguments": arguments},
        }
        conversation = [user, {"role": "assistant", "content": "", "tool_calls": [call]}]
        try:
            text = render(conversation, tools=[_PROBE_TOOL])
        except Exception:
            continue
        # An object rendered with tojson shows the key in quotes; a string argument rendered with
        # tojson would show it escaped (\"pendra_probe_arg\"), which is the wrong choice.
        if '"pendra_probe_arg"' in text and '\\"pendra_probe_arg\\"' not in text:
            return TemplateCaps(True, object_arguments)
    return TemplateCaps(True, True)


def tools_system_text(
    tools: list[dict[str, Any]], choice: str, name: str | None, parallel: bool
) -> str:
    """The Hermes-style description of the tools, for templates without tool support."""
    lines = [
        "# Tools",
        "",
        "You may call one or more functions to assist with the user query.",
        "",
        "You are provided with function signatures within <tools></tools> XML tags:",
        "<tools>",
        *(json.dumps(tool, ensure_ascii=False) for tool in tools),
        "</tools>",
        "",
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:",
        "<tool_call>",
        '{"name": <function-name>, "arguments": <args-json-object>}',
        "</tool_call>",
    ]
    if choice == "required":
        lines += ["", "You must call at least one function."]
    elif choice == "function" and name:
        lines += ["", f"You must call the function {name}."]
    if not parallel:
        lines += ["", "Call at most one function."]
    return "\n".join(lines)


def template_inputs(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    choice: str,
    name: str | None,
    parallel: bool,
    caps: TemplateCaps,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and extra template variables to render a conversation with."""
    if caps.native_tools:
        context: dict[str, Any] = {"tools": tools} if tools else {}
        return [_native_message(m, caps.object_arguments) for m in messages], context
    inject = bool(tools) and choice != "none"
    if not inject and not any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        return messages, {}  # nothing about tools here: the conversation as it is
    converted = [_plain_message(m) for m in messages]
    if inject:
        text = tools_system_text(tools, choice, name, parallel)
        if converted and converted[0]["role"] == "system":
            first = converted[0]
            converted[0] = {**first, "content": f"{first['content']}\n\n{text}".lstrip()}
        else:
            converted.insert(0, {"role": "system", "content": text})
    return _merge_runs(converted), {}


def _native_message(message: dict[str, Any], object_arguments: bool) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls or not object_arguments:
        return message
    rendered = []
    for call in calls:
        function = call["function"]
        try:
            arguments = json.loads(function["arguments"]) if function["arguments"].strip() else {}
        except ValueError:
            arguments = function["arguments"]  # not JSON: the template gets the text
        rendered.append({**call, "function": {**function, "arguments": arguments}})
    return {**message, "tool_calls": rendered}


def _plain_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message["role"]
    if role == "tool":
        return {
            "role": "user",
            "content": f"<tool_response>\n{message['content']}\n</tool_response>",
        }
    if role == "assistant" and message.get("tool_calls"):
        blocks = []
        for call in message["tool_calls"]:
            function = call["function"]
            try:
                arguments: Any = json.loads(function["arguments"] or "{}")
            except ValueError:
                arguments = function["arguments"]
            body = json.dumps(
                {"name": function["name"], "arguments": arguments}, ensure_ascii=False
            )
            blocks.append(f"<tool_call>\n{body}\n</tool_call>")
        text = "\n".join([message["content"], *blocks]) if message["content"] else "\n".join(blocks)
        return {"role": "assistant", "content": text}
    return {k: v for k, v in message.items() if k in ("role", "content", "name")}


def _merge_runs(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if out and out[-1]["role"] == message["role"] and message["role"] != "system":
            out[-1] = {**out[-1], "content": f"{out[-1]['content']}\n\n{message['content']}"}
        else:
            out.append(dict(message))
    return out

"""Tool calls in each model syntax: detection, parsing, streaming, template inputs (pure)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_factory import CHATML_TEMPLATE, TOOLS_TEMPLATE

from worker.backends.pendra.chat_format import GEMMA, PromptRenderer
from worker.backends.pendra.choices import CallOut, Choice, Out, TextOut
from worker.backends.pendra.tool_calls import ToolCall, detect_format, parse
from worker.backends.pendra.tool_prompt import TemplateCaps, probe_caps, template_inputs
from worker.backends.pendra.tool_stream import CallDelta, ContentDelta, ToolCallStream

WEATHER = ToolCall("get_weather", '{"city":"Paris","days":3}')
NOOP = ToolCall("noop", "{}")

ANSWERS = [
    (
        "hermes",
        'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
        '"days": 3}}\n</tool_call>\n<tool_call>{"name": "noop", "arguments": {}}</tool_call>',
        "Let me look.\n\n",
        [WEATHER, NOOP],
    ),
    (
        "hermes",  # the answer ended before </tool_call>
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}',
        "",
        [WEATHER],
    ),
    ("hermes", "no calls here <tool_call> {oops", "no calls here <tool_call> {oops", []),
    (
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}; '
        '{"name": "noop", "parameters": {}}',
        "",
        [WEATHER, NOOP],
    ),
    ("llama3", 'The JSON is {"name": "x"}', 'The JSON is {"name": "x"}', []),
    (
        "mistral",
        'Sure[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]',
        "Sure",
        [WEATHER],
    ),
    (
        "mistral_args",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 3}[TOOL_CALLS]noop[ARGS]{}',
        "",
        [WEATHER, NOOP],
    ),
    (
        "functiongemma",
        "<start_function_call>call:get_weather{city:<escape>Paris<escape>,days:3}"
        "<end_function_call><start_function_call>call:noop{}<end_function_call>",
        "",
        [WEATHER, NOOP],
    ),
    ("pythonic", '[get_weather(city="Paris", days=3), noop()]', "", [WEATHER, NOOP]),
    ("pythonic", '```tool_code\nget_weather(city="Paris", days=3)\n```', "", [WEATHER]),
    ("pythonic", "[1, 2, 3] is a list", "[1, 2, 3] is a list", []),
]


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), ANSWERS)
def test_parse(fmt: str, text: str, content: str, calls: list[ToolCall]) -> None:
    parsed = parse(fmt, text)
    assert parsed.calls == calls
    assert parsed.content == content
    for call in parsed.calls:
        assert isinstance(json.loads(call.arguments), dict)


def _streamed(fmt: str, text: str, cuts: list[int]) -> tuple[str, list[ToolCall]]:
    stream = ToolCallStream(fmt)
    content, calls = "", []
    bounds = [0, *sorted(set(cuts)), len(text)]
    events = []
    for start, end in itertools.pairwise(bounds):
        events += stream.feed(text[start:end])
    events += stream.finish()
    for event in events:
        if isinstance(event, ContentDelta):
            content += event.text
        else:
            assert isinstance(event, CallDelta) and event.index == len(calls)
            calls.append(event.call)
    return content, calls


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), ANSWERS)
@given(data=st.data())
def test_streamed_deltas_reassemble_to_the_whole_answer(
    fmt: str, text: str, content: str, calls: list[ToolCall], data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert _streamed(fmt, text, cuts) == (content, calls)


def test_a_closed_hermes_call_leaves_before_the_answer_ends() -> None:
    stream = ToolCallStream("hermes")
    text = '<tool_call>{"name": "noop", "arguments": {}}</tool_call>\n<tool'
    assert stream.feed(text) == [CallDelta(0, NOOP)]
    assert stream.finish() == [ContentDelta("\n<tool")]  # what followed was text after all
    assert parse("hermes", text).content == "\n<tool"


CUT_OFF = {
    # an answer max_tokens ended inside its second call, per format
    "hermes": '<tool_call>{"name": "noop", "arguments": {}}</tool_call>\n<tool_call>\n{"name":',
    "functiongemma": (
        "<start_function_call>call:noop{}<end_function_call><start_function_call>call:"
    ),
}


@pytest.mark.parametrize("fmt", list(CUT_OFF))
def test_a_call_cut_off_by_max_tokens_is_not_content(fmt: str) -> None:
    text = CUT_OFF[fmt]
    cut = parse(fmt, text, cut=True)
    assert cut.calls == [NOOP] and cut.content == ""
    # not cut (the model stopped there itself): what follows the calls is its text, as before
    assert parse(fmt, text).content != ""
    for pieces in ([text], [text[:30], text[30:]]):
        stream = ToolCallStream(fmt)
        events = [event for piece in pieces for event in stream.feed(piece)]
        events += stream.finish(cut=True)
        assert events == [CallDelta(0, NOOP)]


def test_text_that_might_open_a_call_waits() -> None:
    stream = ToolCallStream("hermes")
    assert stream.feed("Hello <tool_") == [ContentDelta("Hello ")]
    assert stream.feed("kit>") == [ContentDelta("<tool_kit>")]


def test_parallel_false_keeps_the_first_call() -> None:
    text = ANSWERS[0][1]
    stream = ToolCallStream("hermes", parallel=False)
    events = stream.feed(text) + stream.finish()
    assert [e.call for e in events if isinstance(e, CallDelta)] == [WEATHER]


@pytest.mark.parametrize(
    ("template", "native", "fmt"),
    [
        (TOOLS_TEMPLATE, True, "hermes"),
        ("{{ '[TOOL_CALLS]' }}{{ tools }}", True, "mistral"),
        ("[TOOL_CALLS] [ARGS] {{ tools }}", True, "mistral_args"),
        ("<start_function_call>{{ tools }}", True, "functiongemma"),
        ("<|start_header_id|>{{ tools }}<|eot_id|>", True, "llama3"),
        ("<|python_start|>{{ tools }}", True, "pythonic"),
        (CHATML_TEMPLATE, False, "hermes"),
        (None, False, "hermes"),
    ],
)
def test_detect_format(template: str | None, native: bool, fmt: str) -> None:
    assert detect_format(template, native) == fmt


def _renderer(template: str | None, fallback: str = "chatml") -> PromptRenderer:
    return PromptRenderer(template, fallback, bos_token="<s>", eos_token="<|im_end|>")


def _render_with(renderer: PromptRenderer):  # the runner's probe callable
    return lambda messages, **context: renderer.render(messages, **context).text


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CONVERSATION = [
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    },
    {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
]


def test_a_template_with_tools_gets_them_as_they_are() -> None:
    renderer = _renderer(TOOLS_TEMPLATE)
    caps = probe_caps(_render_with(renderer))
    assert caps == TemplateCaps(native_tools=True, object_arguments=True)
    messages, context = template_inputs(
        CONVERSATION, TOOLS, choice="auto", name=None, parallel=True, caps=caps
    )
    text = renderer.render(messages, **context).text
    assert '"name": "get_weather"' in text  # the tool, in the system turn
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in text  # the call
    assert "<tool_response>\nsunny\n</tool_response>" in text


@pytest.mark.parametrize(("template", "fallback"), [(None, "gemma"), (CHATML_TEMPLATE, "chatml")])
def test_a_template_without_tools_gets_them_described(template: str | None, fallback: str) -> None:
    renderer = _renderer(template, fallback)
    caps = probe_caps(_render_with(renderer))
    assert not caps.native_tools
    messages, context = template_inputs(
        [{"role": "system", "content": "Be brief."}, *CONVERSATION],
        TOOLS,
        choice="function",
        name="get_weather",
        parallel=False,
        caps=caps,
    )
    assert context == {}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert system.startswith("Be brief.\n\n# Tools")
    assert "You must call the function get_weather." in system
    assert "Call at most one function." in system
    assert '"name": "get_weather", "arguments": {"city": "Oslo"}' in messages[2]["content"]
    assert messages[3]["content"] == "<tool_response>\nsunny\n</tool_response>"
    text = renderer.render(messages).text  # Gemma's alternation holds
    if fallback == "gemma":
        assert text.count("<start_of_turn>user") == 2


def test_a_conversation_without_tools_is_left_alone() -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert template_inputs(
        messages, [], choice="none", name=None, parallel=True, caps=TemplateCaps()
    ) == (messages, {})


def test_gemma_fallback_is_not_native() -> None:
    assert not probe_caps(_render_with(_renderer(GEMMA, "gemma"))).native_tools


def _whole_and_streamed(
    text: str, step: int, reason: str, *, logprobs: bool
) -> tuple[Choice, Choice, list[Out]]:
    """``text`` fed ``step`` characters at a time to a whole and a streamed Hermes choice (each
    piece with a log-probability entry when ``logprobs``), then finished with ``reason``: both
    choices, and what the streamed one sent."""
    whole = Choice(0, tool_format="hermes", parallel=True, logprobs=logprobs, streaming=False)
    streamed = Choice(0, tool_format="hermes", parallel=True, logprobs=logprobs, streaming=True)
    outs: list[Out] = []
    for i in range(0, len(text), step):
        if logprobs:
            for choice in (whole, streamed):
                choice.info({"b": text[i : i + step].encode().hex(), "l": -0.5, "top": []})
        whole.feed(text[i : i + step])
        outs += streamed.feed(text[i : i + step])
    whole.finish(reason, usage=None)  # type: ignore[arg-type]
    outs += streamed.finish(reason, usage=None)  # type: ignore[arg-type]
    return whole, streamed, outs


def test_choice_streaming_and_whole_agree_with_log_probabilities() -> None:
    text = ANSWERS[0][1]
    whole, streamed, outs = _whole_and_streamed(text, 5, "stop", logprobs=True)
    result = whole.result()
    assert result.finish_reason == streamed.finish_reason == "tool_calls"
    assert "".join(o.text for o in outs if isinstance(o, TextOut)) == result.content
    assert [o.call for o in outs if isinstance(o, CallOut)] == result.calls
    sent = [e for o in outs for e in (o.logprobs or [])] + (streamed.pending_logprobs() or [])
    assert sent == result.logprobs and len(sent) == len(range(0, len(text), 5))


def test_a_choice_cut_off_mid_call_streams_and_answers_the_same() -> None:
    whole, streamed, outs = _whole_and_streamed(CUT_OFF["hermes"], 7, "length", logprobs=False)
    result = whole.result()
    assert result.finish_reason == streamed.finish_reason == "length"
    assert result.content is None and result.calls == [NOOP]
    assert not [o for o in outs if isinstance(o, TextOut)]
    assert [o.call for o in outs if isinstance(o, CallOut)] == [NOOP]

"""The meter's token reader on response bodies in the shapes vLLM and OpenAI send
(tests/data/openai), fed the way the proxy feeds it: chunk by chunk, with the time each
chunk went to the client."""

from pathlib import Path

import pytest

from modelpilot.meter.openai import (
    BodyReader,
    StreamReader,
    Tokens,
    is_openai,
    reader_for,
    tokens_in,
)

DATA = Path(__file__).parents[1] / "data" / "openai"
START = 0.5


def events(name: str) -> list[bytes]:
    return [e + b"\n\n" for e in (DATA / name).read_bytes().split(b"\n\n") if e]


def stream(name: str, complete: bool = True, upto: int | None = None) -> Tokens | None:
    """Event i reaches the client at 1.0 + 0.1 i seconds."""
    reader = StreamReader(START)
    for i, event in enumerate(events(name)[:upto]):
        reader.feed(event, 1.0 + 0.1 * i)
    return reader.result(complete)


def test_chat_stream_with_usage_takes_the_final_usage_chunk() -> None:
    tokens = stream("vllm-chat-stream-usage.sse")
    # Event 0 is the role-only chunk; content runs from event 1 (t=1.1) to event 7 (t=1.7).
    assert tokens == Tokens(
        input=21, output=7, source="usage", ttft=pytest.approx(0.6), tpot=pytest.approx(0.6 / 6)
    )


def test_chat_stream_without_usage_counts_content_deltas() -> None:
    tokens = stream("vllm-chat-stream.sse")
    assert tokens == Tokens(
        input=None, output=7, source="deltas", ttft=pytest.approx(0.6), tpot=pytest.approx(0.1)
    )


def test_completions_stream_reads_text_choices() -> None:
    tokens = stream("vllm-completions-stream-usage.sse")
    assert tokens == Tokens(
        input=6, output=4, source="usage", ttft=pytest.approx(0.5), tpot=pytest.approx(0.3 / 3)
    )


def test_a_running_usage_total_counts_once_at_its_last_value() -> None:
    tokens = stream("vllm-completions-stream-continuous-usage.sse")
    assert tokens == Tokens(
        input=5, output=3, source="usage", ttft=pytest.approx(0.5), tpot=pytest.approx(0.1)
    )


def test_an_error_mid_stream_counts_what_was_sent_and_no_tpot() -> None:
    tokens = stream("vllm-chat-stream-error.sse")
    assert tokens == Tokens(
        input=None, output=3, source="deltas", ttft=pytest.approx(0.6), tpot=None
    )


def test_a_client_that_hangs_up_mid_stream_counts_what_it_got() -> None:
    # Role chunk and three content chunks sent, then the proxy was cancelled.
    tokens = stream("vllm-chat-stream-usage.sse", complete=False, upto=4)
    assert tokens == Tokens(
        input=None, output=3, source="deltas", ttft=pytest.approx(0.6), tpot=None
    )


def test_hanging_up_before_any_content_leaves_ttft_unknown() -> None:
    assert stream("vllm-chat-stream.sse", complete=False, upto=1) == Tokens(
        input=None, output=0, source="deltas"
    )


@pytest.mark.parametrize("name", [p.name for p in DATA.glob("*.sse")])
def test_chunk_boundaries_do_not_matter(name: str) -> None:
    whole = stream(name)
    body = (DATA / name).read_bytes()
    for size in (1, 7, 64):
        reader = StreamReader(START)
        for at in range(0, len(body), size):
            reader.feed(body[at : at + size], 2.0)
        split = reader.result(True)
        assert split is not None and whole is not None
        assert (split.input, split.output, split.source) == (
            whole.input,
            whole.output,
            whole.source,
        )


@pytest.mark.parametrize(
    "body",
    [
        b"data: not json\n\n",
        b"data: [1, 2]\n\n",
        b"data: " + b"[" * 5000 + b"\n\n",  # deeper than json's recursion limit
        b"x" * (1 << 20) + b"y" * 10,  # a line longer than any chunk
        b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: {oops\n\n',
    ],
)
def test_a_stream_that_is_not_openai_is_not_counted(body: bytes) -> None:
    reader = StreamReader(START)
    reader.feed(body, 1.0)
    assert reader.result(True) is None


def body(name: str, size: int = 1 << 20, complete: bool = True) -> Tokens | None:
    data = (DATA / name).read_bytes()
    reader = BodyReader()
    for at in range(0, len(data), size):
        reader.feed(data[at : at + size], 1.0)
    return reader.result(complete)


@pytest.mark.parametrize("size", [1, 5, 1 << 20])
def test_a_json_body_gives_its_usage_whatever_the_chunks(size: int) -> None:
    # The message's content quotes {"usage": 3}: escaped inside a string, it is not the key.
    assert body("vllm-chat.json", size) == Tokens(input=34, output=12, source="usage")


def test_embeddings_count_input_tokens() -> None:
    assert body("vllm-embeddings.json") == Tokens(input=9, output=0, source="usage")


def test_a_body_cut_short_is_not_counted() -> None:
    assert body("vllm-chat.json", complete=False) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'{"usage": "many"}',
        b'{"usage": {"prompt_tokens": -1}}',
        b'{"usage": {"prompt_tokens": 3',
        b'{"usage" 3}',
        b'{"usage": {"prompt_tokens": true}}',
    ],
)
def test_a_body_without_a_usable_usage_is_not_counted(data: bytes) -> None:
    reader = BodyReader()
    reader.feed(data, 1.0)
    assert reader.result(True) is None


def test_only_openai_paths_and_their_content_types_are_read() -> None:
    assert is_openai("POST", "/v1/chat/completions")
    assert is_openai("POST", "/openai/v1/completions")  # behind a path prefix
    assert not is_openai("GET", "/v1/chat/completions")
    assert not is_openai("POST", "/predict")
    assert isinstance(reader_for("text/event-stream; charset=utf-8", 0), StreamReader)
    assert isinstance(reader_for("application/json", 0), BodyReader)
    assert reader_for("text/plain", 0) is None
    assert reader_for("application/json", 0, "gzip") is None  # passed on compressed, unread
    assert isinstance(reader_for("application/json", 0, "identity"), BodyReader)


def test_a_whole_body_held_for_an_async_client_counts_tokens_only() -> None:
    sse = (DATA / "vllm-chat-stream-usage.sse").read_bytes()
    assert tokens_in("POST", "/v1/chat/completions", 200, "text/event-stream", sse) == Tokens(
        input=21, output=7, source="usage"
    )
    chat = (DATA / "vllm-chat.json").read_bytes()
    assert tokens_in("POST", "/v1/chat/completions", 500, "application/json", chat) is None
    assert tokens_in("POST", "/predict", 200, "application/json", chat) is None

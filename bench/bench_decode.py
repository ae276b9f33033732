"""Single-stream decode: the full Pendra path vs a raw llama.cpp loop and vs llama-server.

* full path: client → ``pendra sandbox`` ingress → WSS → ``pendra --no-ui`` → the model's runner
* raw: :mod:`bench.raw_llama` in this process (``llama_decode`` + native greedy sampler), same
  GGUF, same thread count, EOS ignored.
* llama-server: llama.cpp's C++ server on the same GGUF and threads, streamed to with the same
  client (when its binary is available: :mod:`bench.llama_server`), EOS ignored.

Decode rate = (tokens − 1) / (last token − first token), so prefill and TTFT are left out on every
side (TTFT has its own bench). Rounds alternate between the sides so machine noise hits all alike.

    .venv/bin/python bench/bench_decode.py [--quick] [--tokens 192] [--rounds 5] [--profile]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args, llama_server  # noqa: E402
from bench.model_file import chat_model  # noqa: E402
from bench.profiling import take_profiles  # noqa: E402
from bench.raw_llama import RawModel  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.sse_client import StreamTrace, session, stream_chat  # noqa: E402
from bench.stack import Stack, start_stack  # noqa: E402
from bench.stats import decode_rate, median  # noqa: E402
from bench.workload import MODEL_ID, RAW_PROMPT, chat_body  # noqa: E402

GOAL = 0.90
GOAL_VS_SERVER = 0.95
CONTEXT = 2048


def full_rate(trace: StreamTrace) -> tuple[float, int]:
    """(decode tok/s, tokens) of one streamed answer; tokens from the usage the worker reports."""
    tokens = trace.completion_tokens or len(trace.contents)
    first, last = trace.content_ns[0] / 1e9, trace.content_ns[-1] / 1e9
    # Chunks can carry more than one token (held-back UTF-8, coalescing): count tokens, not chunks,
    # and only those after the first chunk's.
    return decode_rate(first, last, tokens), tokens


async def one_stream(stack: Stack, tokens: int) -> StreamTrace:
    async with session() as http:
        return await stream_chat(
            http, stack.api + "/chat/completions", chat_body(tokens), stack.headers()
        )


async def server_stream(server: llama_server.LlamaServer, tokens: int) -> StreamTrace:
    async with session() as http:
        body = {**chat_body(tokens), "ignore_eos": True}
        return await stream_chat(http, server.api + "/chat/completions", body)


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=192, help="tokens per answer (192)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.rounds = 8, 1
    model = chat_model(args.model)
    threads = cli_args.threads_or_default(args.threads)
    profile_dir = Path(tempfile.mkdtemp(prefix="pendra-bench-prof-")) if args.profile else None
    raw = RawModel(model, threads=threads, n_ctx=CONTEXT)
    prompt = raw.tokenize(RAW_PROMPT)
    stack = start_stack(
        models={MODEL_ID: model},
        worker_env={"PENDRA_THREADS": str(threads), "PENDRA_MAX_CONTEXT": str(CONTEXT)},
        profile_dir=profile_dir,
    )
    binary = llama_server.find_binary()
    server = None
    raw_rates: list[float] = []
    full_rates: list[float] = []
    full_tokens: list[int] = []
    server_rates: list[float] = []
    try:
        stack.wait_for_models({MODEL_ID})
        asyncio.run(one_stream(stack, 4))  # load the model in the worker (not timed)
        raw.generate([prompt], 4)
        if binary is not None:
            server = llama_server.start(
                binary, model, threads=threads, context=CONTEXT, parallel=1, alias=MODEL_ID
            )
            asyncio.run(server_stream(server, 4))
        for n in range(args.rounds):
            timing = raw.generate([prompt], args.tokens)[0]
            raw_rates.append(
                decode_rate(timing.token_times[0], timing.token_times[-1], timing.tokens)
            )
            rate, count = full_rate(asyncio.run(one_stream(stack, args.tokens)))
            full_rates.append(rate)
            full_tokens.append(count)
            line = f"raw {raw_rates[-1]:.1f} tok/s, full path {rate:.1f} tok/s ({count} tokens)"
            if server is not None:
                server_rates.append(full_rate(asyncio.run(server_stream(server, args.tokens)))[0])
                line += f", llama-server {server_rates[-1]:.1f} tok/s"
            print(f"bench decode: round {n + 1}: {line}", file=sys.stderr)
    finally:
        stack.close()
        raw.close()
        if server is not None:
            server.close()
    section = Section(
        title="Single-stream decode",
        intro=(
            f"`{model.name}`, {threads} thread(s), {args.tokens}-token streamed answers, greedy, "
            f"{args.rounds} alternating rounds (best round = least disturbed by other load). "
            f"Full path: client → sandbox → WSS → worker → the model's runner process. Raw: a "
            f"`llama_decode` loop with the native greedy sampler in one process (same GGUF, "
            f"threads, flash-attn setting). llama-server: llama.cpp's C++ server, same GGUF and "
            f"threads, same streaming client."
        ),
        columns=("full path", "baseline"),
    )
    section.rows = [
        Row("vs raw loop, best round", max(full_rates), max(raw_rates), "tok/s", goal=GOAL),
        Row("vs raw loop, median round", median(full_rates), median(raw_rates), "tok/s"),
    ]
    if server_rates:
        section.rows += [
            Row(
                "vs llama-server, best round",
                max(full_rates),
                max(server_rates),
                "tok/s",
                goal=GOAL_VS_SERVER,
            ),
            Row("vs llama-server, median round", median(full_rates), median(server_rates), "tok/s"),
        ]
    rounds = (
        f"rounds — full path: {', '.join(f'{r:.1f}' for r in full_rates)} tok/s "
        f"({', '.join(map(str, full_tokens))} tokens); raw: "
        f"{', '.join(f'{r:.1f}' for r in raw_rates)} tok/s ({args.tokens} tokens)"
    )
    if server_rates:
        rounds += f"; llama-server: {', '.join(f'{r:.1f}' for r in server_rates)} tok/s"
    section.notes.append(rounds + ".")
    if binary is None:
        section.notes.append(
            f"no llama-server binary ({llama_server.ENV} or PATH): its rows are left out."
        )
    else:
        section.notes.append(f"llama-server: {llama_server.version(binary)}.")
    if min(full_tokens) < args.tokens // 2:
        section.notes.append("the model stopped early (EOS) in a full-path round; rates still hold")
    section.profile = take_profiles(profile_dir)
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The batched engine's own cost per step: everything a runner does around ``llama_decode``.

The real ``BatchedChatEngine`` runs on the real GGUF (vocabulary, detokenisation, stop matching,
per-step frames encoded for the wire), with ``llama_decode`` and the sampler replaced by no-ops that
return a fixed token, so what is timed is the Python around them: planning the batch, reading the
logits row, detokenising, stop strings, the outbox and the wire encoding. The baseline is one real
``llama_decode`` step of the same model with the same sequences, measured in the same run. CPU time
of the engine thread (``time.thread_time``), so other load on the machine counts little.

The sampler stubbed out above is measured on its own: a temperature-0 pick from a real logits row
by the engine's argmax vs llama.cpp's greedy sampler chain, CPU per sequence per step.

    .venv/bin/python bench/bench_engine_step.py [--quick] [--steps 2000]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cli_args  # noqa: E402
from bench.model_file import chat_model  # noqa: E402
from bench.raw_llama import RawModel  # noqa: E402
from bench.report import Row, Section  # noqa: E402
from bench.workload import RAW_PROMPT  # noqa: E402

LEVELS = (1, 4, 8)
GOAL_US = 100.0  # the engine's own work per step, whatever the model
GOAL_PICK = 0.25  # a greedy pick: at most a quarter of what llama.cpp's greedy chain costs


def engine_cpu_per_step(model: Path, threads: int, sequences: int, steps: int) -> float:
    """Seconds of engine-thread CPU per step, llama_decode and sampling stubbed out."""
    from worker.backends.pendra import batched, sampling, wire
    from worker.backends.pendra.jobs import ChatJob, Outbox
    from worker.backends.pendra.params import ChatParams
    from worker.backends.pendra.runtime import LlamaRuntime, LoadOptions

    class EncodingSink:
        def control(self, message: dict) -> None:
            pass

        def events(self, entries: list) -> None:
            wire.events_frame(entries)  # the runner's real per-step encoding

    options = LoadOptions(n_ctx=4096, n_seq_max=max(LEVELS), n_ubatch=256, threads=threads)
    runtime = LlamaRuntime(model, "bench", options)
    token = runtime.tokenize(" the", add_special=False, parse_special=False)[-1]
    prompt = runtime.tokenize(RAW_PROMPT, add_special=True, parse_special=True)
    real_decode, real_sample = batched.decode, sampling.TokenSampler.sample
    batched.decode = lambda _runtime, _batch: None
    sampling.TokenSampler.sample = lambda *_args: token  # type: ignore[method-assign]
    result: dict[str, float] = {}
    try:
        outbox = Outbox(EncodingSink())
        engine = batched.BatchedChatEngine(
            runtime, "bench", outbox, pool_tokens=4096, slot_ctx=4096, on_stats=lambda _s: None
        )
        jobs = [
            ChatJob(
                i + 1,
                outbox,
                params=ChatParams(model="b", messages=[], temperature=0),
                prompt=prompt,
                max_new=steps,
            )
            for i in range(sequences)
        ]
        run = engine._run

        def timed() -> None:
            start = time.thread_time()
            run()
            result["cpu"] = time.thread_time() - start

        engine._run = timed  # type: ignore[method-assign]
        for job in jobs:
            engine.submit(job)
        done = threading.Event()
        engine.start()
        while not all(job.finished for job in jobs):
            done.wait(0.01)
        engine.close()
    finally:
        batched.decode, sampling.TokenSampler.sample = real_decode, real_sample
    return result["cpu"] / (steps + 1)


def greedy_pick_cpu(raw: RawModel, prompt: list[int], picks: int) -> tuple[float, float]:
    """Seconds of CPU per greedy pick from one logits row: the engine's
    :class:`~worker.backends.pendra.sampling.GreedyArgmax` and llama.cpp's greedy chain
    (``llama_sampler_sample``, which first copies the row into an n_vocab candidate array)."""
    import llama_cpp

    from worker.backends.pendra.sampling import GreedyArgmax

    raw.generate([prompt] * 4, 2)  # logits rows 0..3 hold the last step's outputs
    n_vocab = int(llama_cpp.llama_vocab_n_tokens(raw.vocab))
    greedy = GreedyArgmax(n_vocab, [])
    ours: list[int] = []
    native: list[int] = []
    start = time.thread_time()
    for i in range(picks):
        ours.append(greedy.pick(raw.ctx, i % 4) or -1)
    mid = time.thread_time()
    for i in range(picks):
        native.append(int(llama_cpp.llama_sampler_sample(raw.sampler, raw.ctx, i % 4)))
    end = time.thread_time()
    if ours != native:
        raise SystemExit("bench engine step: the argmax and llama.cpp's greedy chain disagree")
    return (mid - start) / picks, (end - mid) / picks


def decode_wall_per_step(raw: RawModel, prompt: list[int], sequences: int, steps: int) -> float:
    """Seconds per decode step (prefill left out) of the same sequences with the real model."""
    timing = raw.generate([prompt] * sequences, steps)[0]
    times = timing.token_times
    return (times[-1] - times[0]) / max(1, len(times) - 1)


def main(argv: list[str] | None = None) -> int:
    p = cli_args.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="engine steps per level (2000)")
    args = p.parse_args(argv)
    decode_steps = 32
    if args.quick:
        args.steps, decode_steps = 50, 4
    model = chat_model(args.model)
    threads = cli_args.threads_or_default(args.threads)
    raw = RawModel(model, threads=threads, n_ctx=4096, n_seq=max(LEVELS))
    prompt = raw.tokenize(RAW_PROMPT)
    section = Section(
        title="Engine cost per step",
        intro=(
            f"`{model.name}`, {threads} thread(s). The runner's batched engine with `llama_decode` "
            f"and sampling stubbed out ({args.steps} steps per level: batch planning, logits row, "
            f"detokenisation, stop strings, outbox, wire encoding) vs one real decode step of the "
            f"same sequences. Engine: CPU time of its thread (other load counts little). Decode: "
            f"the wall time of a real step, for scale."
        ),
        columns=("engine (Python)", "baseline (last row: llama.cpp's greedy chain)"),
    )
    try:
        for n in LEVELS:
            ours = engine_cpu_per_step(model, threads, n, args.steps)
            step = decode_wall_per_step(raw, prompt, n, decode_steps)
            section.rows.append(
                Row(
                    f"{n} sequence(s)", ours * 1e6, None, "µs", goal=GOAL_US, higher_is_better=False
                )
            )
            section.notes.append(
                f"{n} sequence(s): a real decode step took {step * 1e3:.1f} ms in this run; the "
                f"engine's share is {100 * ours / step:.2f} % of it."
            )
            print(
                f"bench engine step: {n} seq: engine {ours * 1e6:.0f} µs, decode "
                f"{step * 1e3:.1f} ms per step",
                file=sys.stderr,
            )
        ours_pick, native_pick = greedy_pick_cpu(raw, prompt, 50 if args.quick else 1000)
        section.rows.append(
            Row(
                "greedy pick per sequence (argmax vs llama.cpp's greedy chain)",
                ours_pick * 1e6,
                native_pick * 1e6,
                "µs",
                goal=GOAL_PICK,
                higher_is_better=False,
            )
        )
        section.notes.append(
            "greedy pick: CPU per sequence per step to choose a temperature-0 token from its "
            "logits row, numpy's argmax in place (what the engine does when the request has no "
            "penalties, grammar or logprobs) vs `llama_sampler_sample` with a greedy chain (a "
            "copy of the whole row into a candidate array first); the same tokens on both sides."
        )
        print(
            f"bench engine step: greedy pick {ours_pick * 1e6:.0f} µs vs llama.cpp's greedy "
            f"chain {native_pick * 1e6:.0f} µs",
            file=sys.stderr,
        )
    finally:
        raw.close()
    section.publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

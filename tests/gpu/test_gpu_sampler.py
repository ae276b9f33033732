"""GpuSampler: samples on its own thread, bounded history, "gpu" events, source failover."""

from __future__ import annotations

import asyncio
import threading
import time

from gpu_fake_nvml import FakeDevice, FakeNvml

from worker.events import EventBus
from worker.gpu.errors import ProbeUnavailable
from worker.gpu.nvml import NvmlProbe
from worker.gpu.reading import GpuReading
from worker.gpu.sampler import GpuSampler


class ScriptedProbe:
    """A probe whose reads are scripted; records which thread it was called on."""

    name = "scripted"

    def __init__(self, reads: list[object], *, gate: threading.Event | None = None) -> None:
        self.reads = list(reads)
        self.gate = gate
        self.threads: set[str] = set()
        self.closed = 0
        self.reading = threading.Event()
        self.reads_done = 0

    def open(self) -> None:
        if not self.reads:
            raise ProbeUnavailable("nothing scripted")

    def read(self) -> list[GpuReading]:
        self.threads.add(threading.current_thread().name)
        self.reading.set()
        if self.gate is not None:
            self.gate.wait(60)  # a hung driver call, until the test lets it go
        self.reads_done += 1
        item = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self.closed += 1


def _reading(util: float) -> list[GpuReading]:
    return [GpuReading(index=0, name="Fake", utilization=util, memory_total=1, source="scripted")]


async def test_samples_off_the_loop_publish_events_and_keep_bounded_history() -> None:
    bus = EventBus()
    events = bus.subscribe(kinds={"gpu"})
    probe = ScriptedProbe([_reading(float(i)) for i in range(10)])
    sampler = GpuSampler(0.02, bus, history=4, probes=lambda: [probe])
    await sampler.start()
    received = [await asyncio.wait_for(events.get(), 5) for _ in range(6)]
    source = sampler.source
    await sampler.stop()

    assert source == "scripted"
    assert [e["gpus"][0]["utilization"] for e in received] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(sampler.history()) == 4, "history is bounded"
    assert sampler.latest()[0].utilization >= 5.0
    assert probe.threads and all(name.startswith("pendra-gpu") for name in probe.threads)


async def test_a_hung_source_never_blocks_the_event_loop() -> None:
    gate = threading.Event()
    probe = ScriptedProbe([_reading(1.0)], gate=gate)
    sampler = GpuSampler(0.01, EventBus(), probes=lambda: [probe])
    try:
        await sampler.start()
        assert await asyncio.to_thread(probe.reading.wait, 30), "the sampler never read"
        for _ in range(20):  # the loop keeps turning while the read hangs on its own thread
            await asyncio.sleep(0.001)
        await asyncio.wait_for(sampler.stop(), 30)  # stop does not wait for the hung read
        assert probe.reads_done == 0, "stop returned while the read was still hanging"
    finally:
        gate.set()


async def test_failing_source_is_dropped_and_another_is_found() -> None:
    broken = ScriptedProbe([_reading(1.0), ProbeUnavailable("driver went away")])
    spare = ScriptedProbe([_reading(7.0)])
    spare.name = "spare"
    candidates = [[broken], [spare]]
    sampler = GpuSampler(1.0, None, probes=lambda: candidates.pop(0), redetect_s=0)
    assert [g.utilization for g in (await sampler.sample_once()).gpus] == [1.0]
    assert (await sampler.sample_once()).gpus == (), "the failed sample is empty, not a crash"
    assert broken.closed == 1
    assert [g.utilization for g in (await sampler.sample_once()).gpus] == [7.0]
    assert sampler.source == "spare"


async def test_no_gpu_publishes_one_empty_event_and_retries_later() -> None:
    bus = EventBus()
    events = bus.subscribe(kinds={"gpu"})
    calls = []

    def no_sources() -> list[object]:
        calls.append(1)
        return []

    sampler = GpuSampler(1.0, bus, probes=no_sources, redetect_s=3600)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await sampler.sample_once()).gpus == ()
    assert len(calls) == 1, "detection is not retried on every tick"
    first = await asyncio.wait_for(events.get(), 1)
    assert first["gpus"] == []
    try:
        extra = await asyncio.wait_for(events.get(), 0.1)
    except asyncio.TimeoutError:
        extra = None
    assert extra is None, "only one empty event"


async def test_sampler_with_the_nvml_probe_end_to_end() -> None:
    lib = FakeNvml([FakeDevice()])
    sampler = GpuSampler(1.0, EventBus(), probes=lambda: [NvmlProbe(lib, process_name=str)])
    await sampler.start()
    sample = await sampler.sample_once()
    await sampler.stop()
    assert sample.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert sample.as_dict()["gpus"][0]["memory_total"] == FakeDevice().total
    deadline = time.monotonic() + 10  # the close runs on the sampler thread, after stop() returns
    while lib.initialised != 0:
        assert time.monotonic() < deadline, "stop() shuts NVML down"
        await asyncio.sleep(0.01)

"""The host panel's numbers: /proc parsed by pure functions on Linux, psutil elsewhere."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

from worker.host_metrics import (
    HostProbe,
    _proc_reader,
    _psutil_reader,
    parse_meminfo,
    parse_proc_self_stat,
    parse_proc_stat_cpu,
)

PROC_STAT = """cpu  100 5 50 800 40 3 2 0 30 1
cpu0 50 2 25 400 20 1 1 0 15 0
intr 12345
"""


def test_proc_stat_counts_idle_and_iowait_as_idle_and_guest_once() -> None:
    busy, total = parse_proc_stat_cpu(PROC_STAT)
    assert total == 100 + 5 + 50 + 800 + 40 + 3 + 2 + 0  # guest (30, 1) is inside user/nice
    assert busy == total - 800 - 40


def test_proc_stat_of_an_old_kernel_with_fewer_columns() -> None:
    busy, total = parse_proc_stat_cpu("cpu 10 0 10 80\n")
    assert (busy, total) == (20, 100)


def test_proc_stat_without_the_aggregate_line_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_proc_stat_cpu("intr 1 2 3\n")


def test_meminfo_used_is_what_is_not_available() -> None:
    text = "MemTotal:       16000 kB\nMemFree:         2000 kB\nMemAvailable:    6000 kB\n"
    assert parse_meminfo(text) == (10000 * 1024, 16000 * 1024)


def test_meminfo_of_a_kernel_without_memavailable_falls_back_to_memfree() -> None:
    text = "MemTotal:       16000 kB\nMemFree:         2000 kB\n"
    assert parse_meminfo(text) == (14000 * 1024, 16000 * 1024)


def test_process_stat_with_spaces_and_parentheses_in_the_command_name() -> None:
    # fields 3 to 21: state, ten others, utime, stime, four others, num_threads, itrealvalue
    fields = ["S", *[str(n) for n in range(4, 14)], "700", "300", *["0"] * 4, "9", "0"]
    text = f"4242 (pendra (worker) x) {' '.join(fields)}\n"
    assert parse_proc_self_stat(text) == (700, 300, 9)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_proc_reader_agrees_with_psutil_on_this_machine() -> None:
    read = _proc_reader()
    assert read is not None
    before = psutil.Process().num_threads()
    raw = read()
    after = psutil.Process().num_threads()
    assert raw.memory_total == psutil.virtual_memory().total
    # a thread of an earlier test may end meanwhile: the count lies between the two readings
    assert raw.process_threads is not None
    assert min(before, after) <= raw.process_threads <= max(before, after)
    rss = psutil.Process().memory_info().rss
    assert raw.process_rss is not None and abs(raw.process_rss - rss) <= rss // 10
    assert raw.cpu_busy_s is not None and raw.cpu_total_s is not None
    assert 0 < raw.cpu_busy_s < raw.cpu_total_s


def test_psutil_reader_gives_the_same_fields() -> None:
    read = _psutil_reader()
    assert read is not None
    before = psutil.Process().num_threads()
    raw = read()
    after = psutil.Process().num_threads()
    assert raw.memory_total == psutil.virtual_memory().total
    assert raw.process_threads is not None
    assert min(before, after) <= raw.process_threads <= max(before, after)
    assert raw.process_rss and raw.process_cpu_s is not None and raw.cpu_total_s


def test_process_cpu_counts_this_process_busy_between_reads() -> None:
    probe = HostProbe()
    assert probe.read().process_cpu_percent is None
    before = os.times()
    while os.times().user + os.times().system - before.user - before.system < 0.2:
        pass  # burn a measurable amount of CPU time in this process
    reading = probe.read()
    assert reading.process_cpu_percent is not None and reading.process_cpu_percent > 0
    assert reading.cpu_percent is not None and 0 < reading.cpu_percent <= 100

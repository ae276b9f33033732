"""Run the benchmarks and write their sections of docs/benchmarks.md.

Convention (for every bench, present and future): ``bench/bench_<name>.py`` is a script that runs
its measurement and prints a Markdown section body (no top-level heading) on stdout; progress and
diagnostics go to stderr; a non-zero exit means the measurement failed. This runner runs each one
in its own process (so benches never share state) and replaces only the text between
``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->`` in docs/benchmarks.md, appending the
section when it is new. Other sections and hand-written text are left as they are.

    .venv/bin/python bench/run.py            # every bench
    .venv/bin/python bench/run.py install    # only bench_install.py
    .venv/bin/python bench/run.py --list
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by `bench/run.py` (see its docstring for the convention). Each section is replaced "
    "when its bench runs again; numbers come from the machine named in the section.\n"
)


def available() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def replace_section(document: str, name: str, body: str) -> str:
    """``document`` with the ``name`` section set to ``body`` (pure)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    return document.rstrip("\n") + "\n\n" + block + "\n"


def run_bench(path: Path, extra: list[str]) -> tuple[bool, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(path), *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    took = time.monotonic() - started
    if proc.returncode != 0:
        return False, f"_The last run of `{path.name}` failed (exit {proc.returncode})._\n"
    print(f"bench: {path.name} done in {took:.0f} s", file=sys.stderr)
    return True, proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="benches to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benches and exit")
    parser.add_argument("--dry-run", action="store_true", help="print sections, keep the doc")
    args, extra = parser.parse_known_args(argv)
    benches = available()
    if args.list:
        print("\n".join(benches))
        return 0
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; have: {', '.join(benches)}")
    document = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    failed = 0
    for name in args.names or list(benches):
        ok, body = run_bench(benches[name], extra)
        failed += not ok
        if args.dry_run:
            print(body)
        else:
            document = replace_section(document, name, body)
    if not args.dry_run:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(document, encoding="utf-8")
        print(f"bench: wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Self-test of scripts/run_notebooks.py: it must fail the failing fixtures in tests/notebooks/
(naming the notebook and the cell) and pass the OK one.

    python3 scripts/test_runner.py            # scanner unit checks, then the fixtures in a real kernel
    python3 scripts/test_runner.py --scan-only  # only the scanner checks (no kernel, no Rust)

The fixtures are plain Rust cells (no `:dep`), so each takes seconds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "scripts" / "run_notebooks.py"
FIXTURES = REPO / "tests" / "notebooks"

spec = importlib.util.spec_from_file_location("run_notebooks", RUNNER)
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def code(*outputs: dict, tags: list[str] | None = None) -> dict:
    return {"cell_type": "code", "metadata": {"tags": tags or []}, "outputs": list(outputs), "source": ""}


def scan_checks() -> None:
    print("scanner checks", flush=True)
    s = runner.scan_cell
    check(s(code(stream("stdout", "vocabulary 1000\n"))) == [], "clean stdout passes")
    check(s(code(stream("stdout", "no Error: here, not at line start\n"))) == [], "`Error:` mid-line passes")
    check(bool(s(code(stream("stdout", "ok\nError: missing file\n")))), "`Error:` at line start fails")
    panic_lines = ["\n", "thread '<unnamed>' (1) panicked at src/lib.rs:97:1:\n", "boom\n"]
    check(bool(s(code(*[stream("stderr", t) for t in panic_lines]))), "panic split over stream outputs fails")
    check(bool(s(code(stream("stdout", "error[E0308]: mismatched types\n")))), "`error[E` fails")
    err = {"output_type": "error", "ename": "Error", "evalue": "compile", "traceback": ["x"]}
    check(bool(s(code(err))), 'output_type "error" fails')
    html = {"output_type": "display_data", "data": {"text/html": "<td>ok</td>"}, "metadata": {}}
    check(s(code(html)) == [], "HTML display passes")
    check(bool(s(code(stream("stderr", "invalid digit found in string\n")))), "bare stderr (a `?` error) fails")
    check(s(code(stream("stderr", "progress 10%\n"), tags=["allow-stderr"])) == [], "`allow-stderr` tag allows stderr")
    check(
        bool(s(code(stream("stderr", "thread 'main' panicked at x\n"), tags=["allow-stderr"]))),
        "`allow-stderr` does not hide a panic",
    )
    nb = {"cells": [{"cell_type": "markdown", "source": "Error: in prose is fine"}, code(stream("stderr", "oops\n"))]}
    found = runner.scan_notebook(nb, "x.ipynb")
    check(len(found) == 1 and found[0].startswith("x.ipynb: cell 1:"), "problems name notebook and cell index")


def run(*args: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def fixture_checks() -> None:
    print("fixtures in a real evcxr kernel", flush=True)
    with tempfile.TemporaryDirectory() as results:
        # name, should pass, texts the report must contain
        cases = [
            ("ok_minimal", True, []),
            ("fail_panic", False, ["fail_panic.ipynb: cell 2", "panicked at", "deliberate failure"]),
            ("fail_question_mark", False, ["fail_question_mark.ipynb: cell 2", "invalid digit found in string"]),
            ("fail_error_line", False, ["fail_error_line.ipynb: cell 2", "Error: the data file is missing"]),
            ("fail_compile", False, ["fail_compile.ipynb: cell 2", "E0308"]),
        ]
        for name, should_pass, needles in cases:
            t0 = time.time()
            # Their own evcxr build dir, so the self-test can run beside a notebook run.
            tmpdir = str(REPO / "target" / "evcxr-selftest")
            rc, out = run("--scale", "tiny", "--results-dir", results, "--evcxr-tmpdir", tmpdir, str(FIXTURES / f"{name}.ipynb"))
            dt = time.time() - t0
            check((rc == 0) == should_pass, f"{name}: exit {rc} ({'pass' if should_pass else 'fail'} expected, {dt:.1f} s)")
            for n in needles:
                check(n in out, f"{name}: report mentions {n!r}")
            executed = Path(results) / "tests" / "notebooks" / f"{name}.ipynb"
            check(executed.is_file(), f"{name}: executed copy written")
            if executed.is_file():
                rc2, _ = run("--check-only", str(executed))
                check((rc2 == 0) == should_pass, f"{name}: --check-only agrees (exit {rc2})")
                if not should_pass:
                    last = __import__("json").loads(executed.read_text())["cells"][-1]
                    check(last.get("outputs") == [], f"{name}: execution stopped at the failing cell")
            if (rc == 0) != should_pass:
                print(out)


def main() -> int:
    scan_checks()
    if "--scan-only" not in sys.argv:
        fixture_checks()
    if failures:
        print(f"\nrunner self-test FAILED ({len(failures)}):")
        for f in failures:
            print(f"  {f}")
        return 1
    print("\nrunner self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

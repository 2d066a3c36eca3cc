#!/usr/bin/env python3
"""Execute the project's evcxr (Rust) notebooks headless and fail on any error they print.

    python3 scripts/run_notebooks.py [--scale tiny|demo|paper] [NOTEBOOK ...]
    python3 scripts/run_notebooks.py --check-only EXECUTED.ipynb [...]
    python3 scripts/run_notebooks.py --setup-only

What it does:

* Installs what is missing: a virtual environment `.venv` at the repository root with jupyter,
  nbconvert, nbclient and ipykernel; `evcxr_jupyter` (`cargo install evcxr_jupyter --locked`, 15–30 min on 2 cores);
  the `rust` kernelspec (`evcxr_jupyter --install`). It then re-runs itself under `.venv/bin/python`.
* Runs the notebooks one after another (default: `notebooks/*.ipynb` and `notebooks/*/*.ipynb`),
  each top to bottom in a fresh kernel whose working directory is the notebook's folder, with
  `PROTEIN_LM_SCALE=<scale>`, `PROTEIN_LM_RESULTS=<repo>/results/<scale>` (notebooks save figures
  under `$PROTEIN_LM_RESULTS/figures/`) and one persistent `EVCXR_TMPDIR=<repo>/target/evcxr`, so that
  the compiled crate and its dependencies are reused across notebooks and runs.
* Writes each executed notebook to `results/<scale>/<path relative to notebooks/>` (paths outside
  `notebooks/` keep their path relative to the repository root).
* Fails (exit 1) when a cell errors (evcxr compile errors) and also when any output contains
  `panicked at`, a line starting with `Error:`, `error[E`, or an output of type `error`: evcxr only
  prints panics and top-level `?` errors, and nbconvert/nbclient count those cells as successful.
  Execution of a notebook stops at its first failing cell.

Uses only the standard library plus nbformat/nbclient (from `.venv`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
VENV_PY = VENV / "bin" / "python"
VENV_PACKAGES = ["jupyter", "nbconvert", "nbclient", "ipykernel"]
KERNEL = "rust"
SCALES = ("tiny", "demo", "paper")

# What marks a failed cell in an evcxr notebook's outputs.
BAD_PATTERNS = [
    ("panic", re.compile(r"panicked at")),
    ("error result", re.compile(r"^Error:", re.MULTILINE)),
    ("compile error", re.compile(r"error\[E\d*")),
]


def log(msg: str) -> None:
    print(msg, flush=True)


def fmt_secs(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s:.1f} s ({s / 60:.1f} min)"


# ----------------------------------------------------------------------------------------- scanning


def _join(text) -> str:
    return "".join(text) if isinstance(text, list) else str(text)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ALLOW_STDERR_TAG = "allow-stderr"


def cell_texts(cell: dict) -> dict[str, str]:
    """A code cell's outputs by kind: `stdout` and `stderr` (evcxr sends one stream output per line,
    so they are joined), `display` (text/plain and text/html of results) and `error` outputs."""
    parts: dict[str, list[str]] = {"stdout": [], "stderr": [], "display": [], "error": []}
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts["stderr" if output.get("name") == "stderr" else "stdout"].append(_join(output.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            parts["display"].extend(_join(data[m]) + "\n" for m in ("text/plain", "text/html") if m in data)
        elif kind == "error":
            parts["error"].append(f"{output.get('ename', '')}: {output.get('evalue', '')}\n")
            parts["error"].extend(_join(t) + "\n" for t in output.get("traceback", []))
    return {k: ANSI.sub("", "".join(v)) for k, v in parts.items()}


def scan_cell(cell: dict) -> list[str]:
    """Problems found in one code cell's outputs, as human-readable strings.

    Besides the patterns, any text on stderr counts: evcxr reports a top-level `?` error by printing
    only the error's `Display` text to stderr (no `Error:` prefix, no error output), so stderr is the
    only trace it leaves. A cell whose metadata tags include `allow-stderr` may write to stderr."""
    texts = cell_texts(cell)
    problems = []
    if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
        problems.append(f'output_type "error": {excerpt(texts["error"], 0)}')
    for stream in ("stdout", "stderr", "display"):
        for name, pattern in BAD_PATTERNS:
            m = pattern.search(texts[stream])
            if m:
                problems.append(f"{name} on {stream}: {excerpt(texts[stream], m.start())}")
    tags = cell.get("metadata", {}).get("tags", [])
    if not problems and texts["stderr"].strip() and ALLOW_STDERR_TAG not in tags:
        first = texts["stderr"].strip("\n")
        problems.append(
            "stderr output (evcxr prints a top-level `?` error there and carries on; tag the cell "
            f"`{ALLOW_STDERR_TAG}` if it is expected): {excerpt(first, 0)}"
        )
    return problems


def excerpt(text: str, at: int, lines: int = 6) -> str:
    """A few lines of `text` from the line holding offset `at`."""
    start = text.rfind("\n", 0, at) + 1
    chunk = text[start:].strip("\n").splitlines()[:lines]
    return "\n      ".join(line[:300] for line in chunk)


def scan_notebook(nb: dict, name: str) -> list[str]:
    """Problems of an executed notebook: `<name>: cell <index> [id]: <problem>` lines."""
    found = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        for p in scan_cell(cell):
            found.append(f"{name}: cell {index}{cell_label(cell)}: {p}")
    return found


def cell_label(cell: dict) -> str:
    return f" (id {cell['id']})" if cell.get("id") else ""


def check_only(paths: list[str]) -> int:
    failures = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            nb = json.load(f)
        problems = scan_notebook(nb, p)
        failures.extend(problems)
        log(f"{p}: {'FAILED' if problems else 'ok'}")
    for line in failures:
        log(f"  {line}")
    return 1 if failures else 0


# -------------------------------------------------------------------------------------------- setup


def cargo_bin_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("CARGO_HOME"):
        dirs.append(Path(os.environ["CARGO_HOME"]) / "bin")
    dirs.append(Path.home() / ".cargo" / "bin")
    return dirs


def find_evcxr() -> str | None:
    found = shutil.which("evcxr_jupyter")
    if found:
        return found
    for d in cargo_bin_dirs():
        if (d / "evcxr_jupyter").is_file():
            return str(d / "evcxr_jupyter")
    return None


def run_step(what: str, cmd: list[str], **kw) -> None:
    log(f"[setup] {what}: {' '.join(cmd)}")
    t0 = time.time()
    subprocess.run(cmd, check=True, **kw)
    log(f"[setup] {what}: done in {fmt_secs(time.time() - t0)}")


def venv_ok() -> bool:
    if not VENV_PY.is_file():
        return False
    probe = "import nbclient, nbformat, ipykernel, jupyter_client, nbconvert"
    return subprocess.run([str(VENV_PY), "-c", probe], capture_output=True).returncode == 0


# evcxr's generated Cargo.toml builds every crate with overflow checks and debug assertions
# ([profile.dev]), under which candle's and gemm's kernels run about half as fast (a ProteinBERT
# fine-tuning: 107 s of training in the kernel, 53 s in the release CLI). Cargo's environment
# overrides a manifest's profile, so the kernel gets these, from the runner and from its kernelspec.
KERNEL_ENV = {"CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false", "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false"}


def kernelspec_dir() -> Path | None:
    r = subprocess.run(
        [str(VENV_PY), "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True, text=True
    )
    try:
        spec = json.loads(r.stdout).get("kernelspecs", {}).get(KERNEL)
    except json.JSONDecodeError:
        return None
    return Path(spec["resource_dir"]) if spec else None


def ensure_kernel_env() -> None:
    """Adds KERNEL_ENV to the `rust` kernelspec, so that notebooks opened in Jupyter run as fast."""
    d = kernelspec_dir()
    if d is None or not (d / "kernel.json").is_file():
        return
    spec = json.loads((d / "kernel.json").read_text())
    env = spec.setdefault("env", {})
    if all(env.get(k) == v for k, v in KERNEL_ENV.items()):
        return
    env.update(KERNEL_ENV)
    (d / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
    log(f"kernelspec {d / 'kernel.json'}: {', '.join(KERNEL_ENV)} set")


def kernelspec_ok() -> bool:
    r = subprocess.run(
        [str(VENV_PY), "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True, text=True
    )
    if r.returncode != 0:
        return False
    try:
        return KERNEL in json.loads(r.stdout).get("kernelspecs", {})
    except json.JSONDecodeError:
        return False


def setup() -> None:
    """Install whatever is missing; cheap when everything is there."""
    if not venv_ok():
        if not VENV_PY.is_file():
            run_step("venv", [sys.executable, "-m", "venv", str(VENV)])
        run_step("pip", [str(VENV_PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        run_step("pip", [str(VENV_PY), "-m", "pip", "install", "--quiet", *VENV_PACKAGES])
    evcxr = find_evcxr()
    if evcxr is None:
        run_step("evcxr_jupyter (15–30 min on 2 cores)", ["cargo", "install", "evcxr_jupyter", "--locked"])
        evcxr = find_evcxr()
        if evcxr is None:
            sys.exit("evcxr_jupyter was installed but is not on PATH nor in ~/.cargo/bin")
    # Make sure the kernel finds evcxr_jupyter and cargo.
    path = os.environ.get("PATH", "")
    extra = [str(Path(evcxr).parent)] + [str(d) for d in cargo_bin_dirs() if d.is_dir()]
    os.environ["PATH"] = os.pathsep.join([*extra, path])
    if not kernelspec_ok():
        # The kernelspec names the evcxr_jupyter binary; jupyter in the venv reads the user data dir.
        run_step("kernelspec", [evcxr, "--install"])
        if not kernelspec_ok():
            sys.exit(f"the `{KERNEL}` kernelspec is still missing after `evcxr_jupyter --install`")
    ensure_kernel_env()


def reexec_in_venv() -> None:
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not VENV_PY.is_file():
            sys.exit(f"{VENV_PY} is missing: run without --no-setup (or scripts/setup_notebooks.sh) first")
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


# ---------------------------------------------------------------------------------------- executing


def default_notebooks() -> list[Path]:
    """The introductions (top-level 00–04), then each paper's folder, then the top-level notebooks
    numbered 05 and up, which build on the papers' runs (05 fine-tunes both pretrained models)."""
    nbdir = REPO / "notebooks"
    top = sorted(nbdir.glob("*.ipynb"))
    later = [p for p in top if p.name[:2].isdigit() and int(p.name[:2]) >= 5]
    found = [p for p in top if p not in later] + sorted(nbdir.glob("*/*.ipynb")) + later
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def relative_name(path: Path) -> Path:
    path = path.resolve()
    for base in (REPO / "notebooks", REPO):
        try:
            return path.relative_to(base)
        except ValueError:
            pass
    return Path(path.name)


SENTINEL = "__run_notebooks_cell_done__"


def drain_iopub(client, timeout: float) -> list:
    """Stream outputs of the cell that just ended which reach iopub after its idle status.

    evcxr_jupyter forwards the program's stderr on its own thread, so a panic message or a top-level
    `?` error can arrive after the cell has finished. Waiting a fixed grace period for it misses it on
    a busy machine; instead a sentinel cell prints a marker to the same stderr, and everything before
    the marker belongs to the cell. The sentinel's own messages are not recorded. `timeout` bounds the
    wait for a kernel that never answers."""
    import queue

    import nbformat
    from nbclient.util import run_sync

    msg_id = client.kc.execute(f'eprintln!("{SENTINEL}");', silent=False, store_history=False)

    async def collect():
        msgs, seen_marker, idle = [], False, False
        deadline = time.time() + timeout
        while not (seen_marker and idle):
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"no sentinel from the kernel within {timeout:.0f} s")
            try:
                msg = await client.kc.iopub_channel.get_msg(timeout=left)
            except queue.Empty:
                continue
            parent = msg.get("parent_header", {}).get("msg_id")
            content = msg.get("content", {})
            if msg.get("msg_type") == "status" and parent == msg_id and content.get("execution_state") == "idle":
                idle = True
            if msg.get("msg_type") != "stream" or seen_marker:
                continue
            text = content.get("text", "")
            if SENTINEL in text:
                seen_marker = True
                text = text.split(SENTINEL, 1)[0]
                if not text.strip():
                    continue
            msgs.append(nbformat.v4.new_output("stream", name=content.get("name", "stdout"), text=text))
        return msgs

    return run_sync(collect)()


def run_notebook(path: Path, out_path: Path, timeout: int, name: str) -> tuple[list[str], int, int]:
    """Execute one notebook cell by cell, stopping at the first failing cell. Returns the problems,
    the number of code cells run and the number of code cells."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        startup_timeout=300,
        kernel_name=KERNEL,
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    problems: list[str] = []
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    ran = 0
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                t0 = time.time()
                failed = None
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as e:
                    failed = f"cell error: {excerpt(ANSI.sub('', str(e)), 0, 12)}"
                except (CellTimeoutError, DeadKernelError) as e:
                    failed = f"{type(e).__name__}: {e}"
                # Output that evcxr_jupyter forwards after the cell's idle status (a panic message, a
                # top-level `?` error) is collected up to a sentinel, however long it takes to arrive.
                late = drain_iopub(client, timeout)
                if late:
                    cell.outputs.extend(late)
                ran += 1
                dt = time.time() - t0
                if dt >= 5:
                    log(f"    cell {index}{cell_label(cell)}: {fmt_secs(dt)}")
                where = f"{name}: cell {index}{cell_label(cell)}"
                found = scan_cell(cell)
                if found:
                    problems.extend(f"{where}: {p}" for p in found)
                elif failed:
                    problems.append(f"{where}: {failed}")
                if problems:
                    break
    except Exception as e:  # kernel failed to start, etc.
        problems.append(f"{name}: kernel: {type(e).__name__}: {e}")
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out_path))
    return problems, ran, len(code_cells)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb, notebooks/*/*.ipynb)")
    ap.add_argument("--scale", choices=SCALES, default=os.environ.get("PROTEIN_LM_SCALE", "tiny"))
    ap.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds (default 3600)")
    ap.add_argument("--results-dir", help="where executed notebooks and figures go (default results/<scale>)")
    ap.add_argument("--evcxr-tmpdir", help="persistent evcxr build dir (default target/evcxr)")
    ap.add_argument("--check-only", nargs="+", metavar="FILE", help="only scan executed notebooks")
    ap.add_argument("--setup-only", action="store_true", help="install what is missing, run nothing")
    ap.add_argument("--no-setup", action="store_true", help="do not install anything")
    args = ap.parse_args()

    if args.check_only:
        return check_only(args.check_only)

    if not args.no_setup:
        setup()
    if args.setup_only:
        return 0
    reexec_in_venv()

    notebooks = [Path(p).resolve() for p in args.notebooks] or default_notebooks()
    if not notebooks:
        log("no notebooks found")
        return 1
    results = Path(args.results_dir).resolve() if args.results_dir else REPO / "results" / args.scale
    tmpdir = Path(args.evcxr_tmpdir).resolve() if args.evcxr_tmpdir else REPO / "target" / "evcxr"
    tmpdir.mkdir(parents=True, exist_ok=True)
    (results / "figures").mkdir(parents=True, exist_ok=True)
    for d in cargo_bin_dirs():
        if d.is_dir() and str(d) not in os.environ.get("PATH", ""):
            os.environ["PATH"] = os.pathsep.join([str(d), os.environ.get("PATH", "")])
    os.environ.update(
        PROTEIN_LM_SCALE=args.scale,
        PROTEIN_LM_RESULTS=str(results),
        EVCXR_TMPDIR=str(tmpdir),
        **KERNEL_ENV,
    )
    log(f"scale {args.scale}; results in {results}; evcxr build dir {tmpdir}")
    # One kernel at a time per build dir (evcxr shares its Cargo.toml and src there): wait for others.
    import fcntl

    lock = open(tmpdir / ".runner.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"waiting for another run using {tmpdir} ...")
        fcntl.flock(lock, fcntl.LOCK_EX)

    failures: list[str] = []
    summary = []
    t_all = time.time()
    for nb_path in notebooks:
        name = str(relative_name(nb_path))
        out_path = results / relative_name(nb_path)
        log(f"=== {name}")
        t0 = time.time()
        problems, ran, total = run_notebook(nb_path, out_path, args.timeout, name)
        dt = time.time() - t0
        status = "FAILED" if problems else "ok"
        log(f"=== {name}: {status} in {fmt_secs(dt)} ({ran}/{total} code cells run) -> {out_path}")
        for p in problems:
            log(f"  {p}")
        summary.append((name, status, dt, ran, total))
        failures.extend(problems)

    log(f"\nnotebooks at scale {args.scale}: {fmt_secs(time.time() - t_all)}")
    for name, status, dt, ran, total in summary:
        log(f"  {status:6} {dt:8.1f} s  {ran:3}/{total:<3} cells  {name}")
    failed = sum(1 for _, status, *_ in summary if status != "ok")
    log(f"notebooks at {args.scale} scale: {len(summary) - failed} passed, {failed} failed")
    if failures:
        log("\nFAILED:")
        for p in failures:
            log(f"  {p}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU report's document: sections in run order, rewritten atomically (report.json and
report.md) after every section, a failed section recorded while the others still run; and the
small formatting helpers the section modules share (markdown tables, numbers, errors)."""

from __future__ import annotations

import datetime as dt
import gc
import time
import traceback
from pathlib import Path


def _log(msg: str) -> None:
    print(f"[gpu_report] {msg}", flush=True)


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB)"
    return f"{device.type.upper()} ({torch.get_num_threads()} threads)"


def _torch_version() -> str:
    import torch

    cuda = getattr(torch.version, "cuda", None)
    return f"{torch.__version__}" + (f", CUDA {cuda}" if cuda else "")


def _free_gpu() -> None:
    """Release what a finished or failed section left on the GPU. Never raises: after a CUDA
    error the context may be unusable, and the next section then records its own error."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception as e:
            _log(f"warning: could not free GPU memory ({_error(e)})")


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def _short(text: str, n: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= n else line[: n - 1] + "…"


def _fmt(v, spec: str = ",.0f", none: str = "–") -> str:
    if v is None:
        return none
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.2f}%"


def md_table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """A GitHub markdown table; columns in ``right`` are right-aligned."""
    right = right or set()
    sep = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        cells = [str(c).replace("|", "\\|").replace("\n", " ") for c in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report


class Report:
    """Sections in run order; ``save()`` rewrites report.json and report.md atomically."""

    def __init__(self, args, device, command: str):
        self.t0 = time.perf_counter()
        self.out = Path(args.out)
        self.budget_s = args.budget_minutes * 60
        self.device = device
        self.doc = {
            "part": args.part,
            "quick": bool(args.quick),
            "device": _device_name(device),
            "torch": _torch_version(),
            "command": command,
            "started_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "budget_minutes": args.budget_minutes,
            "elapsed_seconds": 0.0,
            "sections": {},
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def failed(self) -> list[str]:
        return [k for k, s in self.doc["sections"].items() if s.get("error") or s.get("errors")]

    def run(self, key: str, title: str, fn, *fn_args):
        """Run ``fn(section, *fn_args)``; ``section`` is the dict saved for this section: the
        function fills in ``result``/``table``/``notes`` (and may call ``self.save()`` between
        sizes). An exception is recorded as the section's error; the run goes on."""
        _log(f"{title} ... (elapsed {self.elapsed():.0f} s, {self.left():.0f} s of budget left)")
        t = time.perf_counter()
        sec = {"title": title, "notes": [], "result": None, "table": None}
        self.doc["sections"][key] = sec
        err = None
        try:
            fn(sec, *fn_args)
        except Exception as e:  # e.g. CUDA out of memory: keep what the other sections measure
            err = _error(e)
            traceback.print_exc()
        if err is not None:
            sec["error"] = err
            _free_gpu()
        sec["seconds"] = round(time.perf_counter() - t, 1)
        self.save()
        state = f"FAILED ({_short(err, 200)})" if err else "done"
        _log(
            f"{title}: {state} in {sec['seconds']:.1f} s; total {self.elapsed():.1f} s "
            f"of the {self.budget_s:.0f} s budget"
        )
        return sec

    def save(self) -> None:
        from helpers.files import atomic_write_json, atomic_write_text

        self.doc["elapsed_seconds"] = round(self.elapsed(), 1)
        self.doc["over_budget"] = self.elapsed() > self.budget_s
        atomic_write_json(self.out / "report.json", self.doc)
        atomic_write_text(self.out / "report.md", self.markdown())

    def markdown(self) -> str:
        d = self.doc
        part = {"q1": "Q1 (ViT on CIFAR-10)", "q2": "Q2 (text-prompted segmentation)"}[d["part"]]
        out = [
            f"# GPU report: {part}",
            "",
            f"- device: {d['device']}",
            f"- torch: {d['torch']}",
            f"- command: `{d['command']}`",
            f"- started {d['started_utc']} UTC; {d['elapsed_seconds'] / 60:.2f} min in all "
            f"(budget {d['budget_minutes']:g} min)",
        ]
        if d["quick"]:
            out.append("- **quick mode**: tiny sizes for a sanity check; the numbers mean nothing.")
        for sec in d["sections"].values():
            out += ["", f"## {sec['title']}", ""]
            took = "still running" if sec.get("seconds") is None else f"{sec['seconds']:.1f} s"
            out.append(
                f"device: {d['device']} · torch {d['torch']} · `{d['command']}` · "
                f"section time {took}"
            )
            if sec.get("table"):
                out += ["", sec["table"]]
            if sec.get("error"):
                out += ["", f"**error:** {_short(sec['error'])}"]
            notes = sec.get("notes") or []
            if notes:
                out.append("")
                out += [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"

"""The GPU report's document: sections in run order, rewritten atomically (report.json and
report.md) after every section, a failed section recorded while the others still run; and the
small formatting helpers the section modules share (markdown tables, numbers, errors)."""

from __future__ import annotations

import datetime as dt
import gc
import math
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
    """Sections in run order; ``save()`` rewrites report.json and report.md atomically.

    ``args.budget_s`` is the whole run's budget (``math.inf``: none). Before a section runs,
    one line gives its estimate and the time left; a section whose estimate does not fit what
    is left is skipped, and the skip is printed and recorded in both files."""

    def __init__(self, args, device, command: str, save: bool = True):
        self.t0 = time.perf_counter()
        self.saving = save
        self.out = Path(args.out)
        self.budget_s = float(args.budget_s)
        self.device = device
        self.doc = {
            "part": args.part or "q1+q2",
            "quick": bool(args.quick),
            "device": _device_name(device),
            "torch": _torch_version(),
            "command": command,
            "started_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "budget_seconds": None if math.isinf(self.budget_s) else round(self.budget_s),
            "elapsed_seconds": 0.0,
            "plan": [],
            "skipped": [],
            "sections": {},
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def failed(self) -> list[str]:
        return [k for k, s in self.doc["sections"].items() if s.get("error") or s.get("errors")]

    def skipped(self) -> list[str]:
        return list(self.doc["skipped"])

    def _left_words(self) -> str:
        if math.isinf(self.budget_s):
            return "no budget set"
        return f"{self.left():.0f} s of the {self.budget_s:.0f} s budget left"

    def set_plan(self, plan: list[tuple[str, str, float]]) -> None:
        """The run's sections up front: (key, what, estimated seconds), printed with their
        total beside the budget and kept in report.json."""
        plan = [(k, w, max(1.0, e)) for k, w, e in plan]  # nothing runs in no time
        self.doc["plan"] = [{"section": k, "what": w, "estimate_s": round(e)} for k, w, e in plan]
        total = sum(e for _, _, e in plan)
        _log("plan (estimates on one H100, compile included):")
        for key, what, est in plan:
            _log(f"  {key:11s} {est:6.0f} s  {what}")
        if math.isinf(self.budget_s):
            _log(f"  total {total:.0f} s (no budget set: nothing is skipped)")
            return
        fits = "" if total <= self.budget_s else "; what does not fit is skipped when it is due"
        _log(f"  total {total:.0f} s of the {self.budget_s:.0f} s budget{fits}")

    def check(
        self, key: str, what: str, estimate_s: float, need_s: float | None = None
    ) -> str | None:
        """Print the estimate line for ``what``; ``None`` when ``need_s`` (default: the
        estimate) fits the time left, else the reason it is skipped (printed and listed in
        ``doc["skipped"]`` under ``key``)."""
        estimate_s = max(1.0, estimate_s)  # nothing runs in no time: a 1-s budget skips it
        need = estimate_s if need_s is None else max(1.0, need_s)
        first = "" if need == estimate_s else f", its first size {need:.0f} s"
        _log(
            f"estimate {estimate_s:.0f} s (one H100, compile included{first}) for {what}; "
            f"{self._left_words()}"
        )
        if need <= self.left():
            return None
        why = (
            f"skipped: estimated {need:.0f} s on one H100, only {max(0.0, self.left()):.0f} s "
            f"of the {self.budget_s:.0f} s budget left"
        )
        _log(f"{what}: {why}")
        self.doc["skipped"].append(key)
        return why

    def run(
        self,
        key: str,
        title: str,
        fn,
        *fn_args,
        estimate_s: float | None = None,
        first_part_s: float | None = None,
    ):
        """Run ``fn(section, *fn_args)``; ``section`` is the dict saved for this section: the
        function fills in ``result``/``table``/``notes`` (and may call ``self.save()`` between
        sizes). With ``estimate_s``, the estimate line comes first and a section that does not
        fit the time left is skipped (recorded, not run); a section measured per model size
        gives ``first_part_s``, its first size's share: the section is skipped only when that
        does not fit, and checks each size itself. An exception is recorded as the section's
        error; the run goes on."""
        sec = {"title": title, "notes": [], "result": None, "table": None}
        if estimate_s is not None:
            sec["estimate_s"] = round(max(1.0, estimate_s))
            need = estimate_s if first_part_s is None else first_part_s
            why = self.check(key, title, estimate_s, need)
            if why is not None:
                return self._skipped(sec, key, why)
        else:
            _log(f"{title} ... (elapsed {self.elapsed():.0f} s, {self._left_words()})")
        t = time.perf_counter()
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
            f"{title}: {state} in {sec['seconds']:.1f} s; total {self.elapsed():.1f} s, {self._left_words()}"
        )
        return sec

    def skip(self, key: str, title: str, why: str) -> dict:
        """Record ``key`` as not run, with the reason (printed, and in both files)."""
        _log(f"{title}: {why}")
        self.doc["skipped"].append(key)
        return self._skipped({"title": title, "notes": [], "result": None, "table": None}, key, why)

    def _skipped(self, sec: dict, key: str, why: str) -> dict:
        sec["skipped"], sec["seconds"] = why, 0.0
        self.doc["sections"][key] = sec
        self.save()
        return sec

    def save(self) -> None:
        from helpers.files import atomic_write_json, atomic_write_text

        if not self.saving:
            return
        self.doc["elapsed_seconds"] = round(self.elapsed(), 1)
        self.doc["over_budget"] = self.elapsed() > self.budget_s
        atomic_write_json(self.out / "report.json", self.doc)
        atomic_write_text(self.out / "report.md", self.markdown())

    def markdown(self) -> str:
        d = self.doc
        part = {
            "q1": "Q1 (ViT on CIFAR-10)",
            "q2": "Q2 (text-prompted segmentation)",
            "q1+q2": "Q1 (ViT on CIFAR-10) and Q2 (text-prompted segmentation)",
        }[d["part"]]
        budget = "no budget" if d["budget_seconds"] is None else f"budget {d['budget_seconds']} s"
        out = [
            f"# GPU report: {part}",
            "",
            f"- device: {d['device']}",
            f"- torch: {d['torch']}",
            f"- command: `{d['command']}`",
            f"- started {d['started_utc']} UTC; {d['elapsed_seconds'] / 60:.2f} min in all "
            f"({budget})",
        ]
        if d["quick"]:
            out.append("- **quick mode**: tiny sizes for a sanity check; the numbers mean nothing.")
        if d["plan"]:
            total = sum(p["estimate_s"] for p in d["plan"])
            plan = ", ".join(f"{p['section']} {p['estimate_s']} s" for p in d["plan"])
            out.append(f"- plan (estimates on one H100, compile included): {plan}; total {total} s")
        if d["skipped"]:
            out.append(f"- **skipped** (each section says why): {', '.join(d['skipped'])}")
        for sec in d["sections"].values():
            out += ["", f"## {sec['title']}", ""]
            took = "still running" if sec.get("seconds") is None else f"{sec['seconds']:.1f} s"
            est = f" (estimate {sec['estimate_s']} s)" if sec.get("estimate_s") is not None else ""
            out.append(
                f"device: {d['device']} · torch {d['torch']} · `{d['command']}` · "
                f"section time {took}{est}"
            )
            if sec.get("skipped"):
                out += ["", f"**{sec['skipped']}**"]
            if sec.get("table"):
                out += ["", sec["table"]]
            if sec.get("error"):
                out += ["", f"**error:** {_short(sec['error'])}"]
            notes = sec.get("notes") or []
            if notes:
                out.append("")
                out += [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"

"""Progress for long work: a bar on a terminal, JSON lines for the Slicer module, or nothing.

Stages have weights so the overall fraction moves evenly; the JSON stream (one object a
line on stdout: stage, fraction, message) is the contract with GlandSeg's Slicer panel.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Iterable

STAGES: tuple[tuple[str, float], ...] = (  # in the order pipeline.segment runs them
    ("read", 0.05), ("locate", 0.05), ("load-model", 0.05), ("crop", 0.05),
    ("inference", 0.6), ("postprocess", 0.05), ("lacrimal", 0.05), ("paste", 0.05), ("write", 0.05),
)


class Progress:
    def __init__(self, mode: str = "none", stream: IO[str] | None = None, stages: Iterable[tuple[str, float]] = STAGES):
        if mode not in ("bar", "json", "none"):
            raise ValueError(f"progress mode {mode!r}")
        self.mode = mode
        self.stream = stream or (sys.stdout if mode == "json" else sys.stderr)
        self.stages = dict(stages)
        self._order = list(self.stages)
        self._start: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        self._current: str | None = None
        self._last_bar = 0.0

    def _base(self, stage: str) -> float:
        return sum(self.stages[s] for s in self._order[: self._order.index(stage)]) if stage in self.stages else 0.0

    def start(self, stage: str, message: str = "") -> None:
        self.finish()
        self._current = stage
        self._start[stage] = time.perf_counter()
        self.update(0.0, message or stage)

    def finish(self) -> None:
        if self._current is not None:
            self.timings[self._current] = round(time.perf_counter() - self._start[self._current], 3)
            self._current = None

    def update(self, stage_fraction: float, message: str = "") -> None:
        stage = self._current or ""
        overall = self._base(stage) + self.stages.get(stage, 0.0) * max(0.0, min(stage_fraction, 1.0))
        if self.mode == "json":
            self.stream.write(json.dumps({"stage": stage, "fraction": round(overall, 4), "message": message}) + "\n")
            self.stream.flush()
        elif self.mode == "bar":
            now = time.perf_counter()
            if now - self._last_bar < 0.1 and stage_fraction not in (0.0, 1.0):
                return
            self._last_bar = now
            width = 30
            filled = int(round(overall * width))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {overall:5.1%} {stage:<12} {message[:40]:<40}")
            self.stream.flush()

    def done(self, message: str = "done") -> None:
        self.finish()
        if self.mode == "json":
            self.stream.write(json.dumps({"stage": "done", "fraction": 1.0, "message": message}) + "\n")
            self.stream.flush()
        elif self.mode == "bar":
            self.stream.write(f"\r[{'#' * 30}] 100.0% {message:<53}\n")
            self.stream.flush()

    def log(self, message: str) -> None:
        """A line the user should read (warnings), whatever the mode."""
        if self.mode == "json":
            self.stream.write(json.dumps({"stage": self._current or "", "level": "warning", "message": message}) + "\n")
            self.stream.flush()
        else:
            if self.mode == "bar":
                sys.stderr.write("\n")
            sys.stderr.write(f"warning: {message}\n")
            sys.stderr.flush()

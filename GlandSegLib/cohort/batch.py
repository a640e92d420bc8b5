"""`glandseg batch COHORT -o OUT`: segment every patient, resumably, one model load.

Why these rules: a cohort run takes hours and meets damaged scans. So the model is
loaded once (one GlandPredictor for all cases); a case whose outputs are complete is
skipped (segment writes all its files at once, so "complete" is simply "all present");
one failing case is recorded with its one-line message and the rest go on; every case
leaves `OUT/<case>/batch_status.json`, and summary.csv is rebuilt from those files under
a lock, so array-job tasks finishing together still leave a complete summary (the last
one to take the lock sees every status written before it).

Inputs: each patient sub-folder of COHORT (a DICOM folder, or a folder with one CT image)
and each CT image file directly in COHORT. Case ids come from the folder or file names.
With --dicom-out, DICOM SEG and RTSTRUCT are written for the DICOM inputs (they must
reference a source series); image-file inputs get the other outputs.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from GlandSegLib.errors import CancelledError, GlandSegError, InputNotFoundError, InvalidInputError
from GlandSegLib.io.images import write_text_atomic
from GlandSegLib.segmentation.pipeline import OUTPUT_FILES

STATUS_FILE = "batch_status.json"
SUMMARY_FILE = "summary.csv"
STAGING_PREFIX = ".glandseg-"  # pipeline._write_outputs stages each result set in OUT/<case>/.glandseg-*/
SUMMARY_FIELDS = ("case_id", "status", "message", "seconds", "dicom_input", "warnings",
                  "lacrimal_r_ml", "lacrimal_l_ml", "parotid_r_ml", "parotid_l_ml", "submandibular_r_ml", "submandibular_l_ml",
                  # each gland's status (found, cut by / outside the field of view, not found, rejected) and confidence
                  "lacrimal_r_status", "lacrimal_l_status", "parotid_r_status", "parotid_l_status", "submandibular_r_status",
                  "submandibular_l_status", "lacrimal_r_confidence", "lacrimal_l_confidence", "parotid_r_confidence",
                  "parotid_l_confidence", "submandibular_r_confidence", "submandibular_l_confidence")
Log = Callable[[str], None]


class CasesFailedError(GlandSegError):
    """The batch ran to the end but some cases failed (listed in summary.csv)."""

    exit_code = 10


@dataclass
class BatchCase:
    case_id: str
    input: Path


def discover_inputs(cohort: str | Path) -> list[BatchCase]:
    """Patient folders and CT files directly in `cohort`, by case id (see module doc)."""
    from GlandSegLib.cohort.cases import _image_stem, _is_image, case_id_for

    root = Path(cohort)
    if not root.exists():
        raise InputNotFoundError(f"{root}: no such cohort folder")
    if not root.is_dir():
        raise InvalidInputError(f"{root}: batch needs a folder with one sub-folder (or CT file) per patient")
    cases: dict[str, BatchCase] = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            cid = case_id_for(p.name)
        elif _is_image(p):
            cid = case_id_for(_image_stem(p))
        else:
            continue
        if cid in cases:
            raise InvalidInputError(f"{cases[cid].input.name!r} and {p.name!r} give the same case id {cid!r}")
        cases[cid] = BatchCase(cid, p)
    if not cases:
        raise InvalidInputError(f"{root}: no patient folders or CT files")
    return list(cases.values())


def expected_files(dicom_out: bool) -> tuple[str, ...]:
    from GlandSegLib.io.dicom_out import DICOM_OUTPUT_FILES

    return OUTPUT_FILES + (DICOM_OUTPUT_FILES if dicom_out else ())


def is_complete(outdir: Path, dicom_out: bool) -> bool:
    """All outputs present; DICOM ones only where the last run of the case was a DICOM input."""
    status = _status(outdir) or {}
    return all((outdir / f).is_file() for f in expected_files(dicom_out and bool(status.get("dicom_input", True))))


def run_batch(
    cohort: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    device: str = "auto",
    dicom_out: bool = False,
    overwrite: bool = False,
    only: list[str] | None = None,
    index: int | None = None,
    trust_model: bool = False,
    log: Log = print,
    keep_rejected: bool = False,
) -> list[dict[str, Any]]:
    """Segment the cases; returns their status rows. CasesFailedError at the end if any failed."""
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.models.registry import load_model_info

    cases = discover_inputs(cohort)
    if only:
        unknown = sorted(set(only) - {c.case_id for c in cases})
        if unknown:
            raise InvalidInputError(f"--case {', '.join(unknown)}: not in {cohort}")
        cases = [c for c in cases if c.case_id in only]
    if index is not None:
        if not 0 <= index < len(cases):
            raise InvalidInputError(f"--index {index}: the cohort has {len(cases)} cases (0..{len(cases) - 1})")
        cases = [cases[index]]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = load_model_info(model)  # fail before any case on a bad model
    predictor: GlandPredictor | None = None
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(cases, start=1):
        outdir = out / case.case_id
        _remove_stale_staging(outdir)
        if not overwrite and is_complete(outdir, dicom_out):
            log(f"[{i}/{len(cases)}] {case.case_id}: done before, skipped")
            rows.append(_status(outdir) or {"case_id": case.case_id, "status": "done"})
            continue
        t = time.perf_counter()
        # no input path in the record: folder names can carry patient names (case ids are the user's choice)
        row: dict[str, Any] = {"case_id": case.case_id}
        try:
            source = _source(case)
            row["dicom_input"] = source.is_dir()
            if predictor is None:
                predictor = GlandPredictor(info, device, trust_model=trust_model)
            result = _segment_one(source, outdir, predictor, dicom_out and source.is_dir(), keep_rejected)
            row.update({"status": "done", "message": "",
                        "warnings": " | ".join(result.report.get("warnings", []))})
            for g in result.report["glands"]:
                row[f"{_key(g['label'])}_ml"] = g["volume_ml"]
                row[f"{_key(g['label'])}_status"] = g.get("status")
                row[f"{_key(g['label'])}_confidence"] = g.get("confidence") if g.get("voxels") else None
        except (KeyboardInterrupt, CancelledError):
            raise
        except GlandSegError as exc:
            row.update({"status": "failed", "message": str(exc)})
        except Exception as exc:  # one broken case must not stop the cohort; the message says it is a bug
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            row.update({"status": "failed", "message": f"internal error ({type(exc).__name__}: {first})"})
        row["seconds"] = round(time.perf_counter() - t, 1)
        log(f"[{i}/{len(cases)}] {case.case_id}: {row['status']}{': ' + row['message'] if row.get('message') else ''} ({row['seconds']} s)")
        outdir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps(row, indent=2) + "\n", outdir / STATUS_FILE)
        rows.append(row)
    write_summary(out)
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        raise CasesFailedError(f"{len(failed)} of {len(rows)} cases failed ({', '.join(r['case_id'] for r in failed)}); see {out / SUMMARY_FILE}")
    return rows


def _key(label: int) -> str:
    from GlandSegLib.glands import BY_LABEL

    return BY_LABEL[int(label)].key


def _source(case: BatchCase) -> Path:
    """What segment reads: a DICOM folder, or the one CT image of a patient folder or the file itself."""
    from GlandSegLib.cohort.cases import find_ct_input

    return find_ct_input(case.input) if case.input.is_dir() else case.input


def _segment_one(source: Path, outdir: Path, predictor: Any, dicom_out: bool, keep_rejected: bool = False) -> Any:
    """Segment one case; DICOM results only for DICOM inputs (dicom_out is False otherwise)."""
    from GlandSegLib.cohort.cases import quiet_itk
    from GlandSegLib.segmentation.pipeline import segment

    with quiet_itk():
        # overwrite=True: an incomplete earlier result (some files deleted) is redone
        return segment(source, outdir, predictor=predictor, overwrite=True, dicom_out=dicom_out, keep_rejected=keep_rejected)


def _remove_stale_staging(outdir: Path) -> None:
    """A run killed while writing (power cut, SLURM time limit, kill -9) leaves its hidden
    staging folder in the case folder, where nothing else would ever remove it: the batch
    owns OUT/<case>, so it clears them before the case is looked at again."""
    if outdir.is_dir():
        for p in outdir.glob(f"{STAGING_PREFIX}*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


def _status(outdir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((outdir / STATUS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); elsewhere, no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_summary(out: Path) -> Path:
    """summary.csv from every OUT/<case>/batch_status.json, under a lock (see module doc)."""
    out = Path(out)
    with _locked(out / ".summary.lock"):
        rows = [s for s in (_status(d) for d in sorted(out.iterdir()) if d.is_dir()) if s]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(SUMMARY_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SUMMARY_FIELDS})
        write_text_atomic(buf.getvalue(), out / SUMMARY_FILE)
    return out / SUMMARY_FILE


def slurm_array_args(n_cases: int, max_parallel: int | None) -> str:
    """The --array range for one task per case."""
    return f"0-{n_cases - 1}" + (f"%{max_parallel}" if max_parallel else "")

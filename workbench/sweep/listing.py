"""`workbench sweeps [--json]`: every sweep under outputs/sweeps with its point counts and dates; with `--json`
one JSON document listing each point's state (done, failed, unfinished, bad, stale, not started), label and
when it last changed, for scripts and CI.

    workbench sweeps --json | jq '.[] | {sweep, last_run, done}'
"""

from __future__ import annotations

import json
import sys

from workbench import console
from workbench.results import integrity
from workbench.results.store import list_sweeps


def list_main(argv: list[str] | None = None) -> int:
    parser = console.parser("sweeps", "list sweeps with their done/failed point counts and dates")
    parser.add_argument("--json", action="store_true", help="one JSON document: every sweep with each point's state")
    args = parser.parse_args(argv)
    sweeps = list_sweeps()
    if args.json:
        print(json.dumps([{**row, "points": point_states(row["sweep"])} for row in sweeps], indent=1, default=str))
        return 0
    for row in sweeps:
        counts = "  ".join(f"{key} {row[key]:>4}" for key in ("done", "failed", "unfinished", "stale"))
        print(f"{row['sweep']:<30} {counts}  bad {len(row['bad']):>4}  last {row.get('last_run') or '-'}")
        for point, why in row["bad"].items():
            print(f"  bad point {point}: {why} (left out; `workbench sweep` runs it again)")
    return 0


def point_states(sweep: str) -> list[dict]:
    """Each point of a sweep folder (and each point its sweep file lists but that never started): its id, label,
    state (done, failed, unfinished, bad, stale, not started), when it last changed (UTC) and a failure's error."""
    import datetime as dt

    from workbench.paths import outputs_dir

    root = outputs_dir() / "sweeps" / sweep
    scan = integrity.scan_sweep(root, include_stale=True)
    states = {p.name: "done" for p in scan.finished}
    states |= dict.fromkeys(scan.failed, "failed") | dict.fromkeys(scan.unfinished, "unfinished")
    states |= dict.fromkeys(scan.bad, "bad") | dict.fromkeys(scan.stale, "stale")
    listed = integrity.read_sweep_record(root).get("points") or []
    out = []
    for pid in sorted(set(states) | set(listed)):
        directory = root / pid
        meta = (integrity.read_point_meta(directory) or {}) if directory.is_dir() else {}
        files = [f for f in directory.glob("*") if f.is_file()] if directory.is_dir() else []
        changed = max((f.stat().st_mtime for f in files), default=None)
        entry = {"point_id": pid, "label": meta.get("label"), "state": states.get(pid, "not started")}
        entry["updated_at"] = (
            dt.datetime.fromtimestamp(changed, dt.timezone.utc).isoformat(timespec="seconds") if changed else None
        )
        if entry["state"] == "failed":
            entry["error"] = json.loads((directory / "error.json").read_text()).get("error")
        elif entry["state"] == "bad":
            entry["error"] = scan.bad[pid]
        out.append(entry)
    return out


if __name__ == "__main__":
    sys.exit(console.entry(list_main))

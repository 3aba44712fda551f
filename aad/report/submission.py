"""DCASE Task 2 submission files: one anomaly-score and one decision file per type and section.

``anomaly_score_<type>_section_<XX>_test.csv`` and ``decision_result_<type>_section_<XX>_test.csv``
(``id_<XX>`` for DCASE 2020 / MIMII ids): one ``<file name>,<value>`` line per clip, no header,
as the challenge's evaluators read them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def submission_name(kind: str, machine_type: str, machine_id: str) -> str:
    """``anomaly_score_fan_section_00_test.csv`` / ``decision_result_fan_id_00_test.csv``."""
    return f"{kind}_{machine_type}_{machine_id}_test.csv"


def write_submission(clip_scores: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write the two files per (machine type, id/section) of the scored clips."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    scored = clip_scores[clip_scores["status"] == "ok"] if "status" in clip_scores else clip_scores
    for (machine_type, machine_id), group in scored.groupby(["machine_type", "machine_id"]):
        if not str(machine_id):
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        names = group["path"].map(lambda p: Path(p).name)
        for kind, column in (("anomaly_score", "score"), ("decision_result", "decision")):
            path = out_dir / submission_name(kind, str(machine_type), str(machine_id))
            pd.DataFrame({"file": names, kind: group[column].to_numpy()}).to_csv(
                path, header=False, index=False, float_format="%.8g"
            )
            written.append(path)
    return written

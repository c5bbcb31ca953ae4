"""The ``lesionnet_evaluate_tracking`` command: table, JSON, per-pair CSV, comparison, errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lesionnet.cli.evaluate_tracking import main
from lesionnet.evaluation.tracking_metrics import SUMMARY_KEYS

DLS = Path(__file__).parent / "data" / "dls"
DLTMIX = DLS / "DLTMix.json"
TEST_JSON = DLS / "test.json"

HEADER = "n     CPM@10mm  CPM@Radius  MED (mm)        MED_X  MED_Y  MED_Z"
DLTMIX_ROW = "960   78.85     86.88       6.98 ± 8.95     3.48   2.93   4.03"
AFFINE_ROW = "960   48.33     65.10       11.23 ± 9.88    4.14   5.36   7.14"


def parse_row(line: str) -> list[float]:
    n, cpm10, cpmr, med, _, std, x, y, z = line.split()[:9]
    return [int(n), float(cpm10), float(cpmr), float(med), float(std), float(x), float(y), float(z)]


@pytest.mark.parametrize("path, row, expected", [
    (DLTMIX, DLTMIX_ROW, [960, 78.85, 86.88, 6.98, 8.95, 3.48, 2.93, 4.03]),
    (TEST_JSON, AFFINE_ROW, [960, 48.33, 65.10, 11.23, 9.88, 4.14, 5.36, 7.14]),
])
def test_fixture_figures(path, row, expected, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    assert main([str(path), "-o", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == HEADER
    assert lines[1] == row
    assert parse_row(lines[1]) == expected
    metrics = json.loads(out_json.read_text())
    assert tuple(metrics) == SUMMARY_KEYS
    assert [metrics["n"]] + [round(metrics[k], 2) for k in SUMMARY_KEYS[:-1]] == expected


def test_per_pair_csv(tmp_path, capsys):
    out_csv = tmp_path / "sub" / "per_pair.csv"
    assert main([str(TEST_JSON), "--per_pair", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 960 and rows[0]["pair_id"] == "0001"
    mean = sum(float(r["distance_mm"]) for r in rows) / len(rows)
    assert round(mean, 2) == 11.23
    assert sum(int(r["hit_10mm"]) for r in rows) / 9.6 == pytest.approx(48.33, abs=0.01)


def test_compare(tmp_path, capsys):
    out_json = tmp_path / "m.json"
    assert main([str(DLTMIX), "--compare", str(TEST_JSON), "-o", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "paired t-test on 960 pairs" in out
    assert DLTMIX_ROW in out and AFFINE_ROW in out
    comparison = json.loads(out_json.read_text())["comparison"]
    assert comparison["distance_mm"]["p_value"] < 0.001
    assert round(comparison["distance_mm"]["mean_difference"], 2) == round(6.979926 - 11.232818, 2)
    assert round(comparison["metrics_b"]["MED"], 2) == 11.23


def test_compare_identical(capsys):
    assert main([str(TEST_JSON), "--compare", str(TEST_JSON)]) == 0
    out = capsys.readouterr().out
    assert "identical on every pair" in out
    assert "nan" not in out.lower()


def test_reference_and_allow_missing(tmp_path, capsys):
    results = json.loads(DLTMIX.read_text())["results"][:955]
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"results": results}))
    assert main([str(preds), "--reference", str(TEST_JSON)]) == 1
    err = capsys.readouterr().err
    assert "no prediction for 5 pair(s)" in err and "0956" in err
    out_json = tmp_path / "m.json"
    assert main([str(preds), "--reference", str(TEST_JSON), "--allow_missing", "-o", str(out_json)]) == 0
    assert "5 reference pair(s) without a prediction" in capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    assert metrics["n"] == 955 and metrics["n_missing"] == 5 and metrics["missing_pairs"][0] == "0956"


def _assert_one_line_error(capsys, *needles):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err
    assert err.startswith("lesionnet_evaluate_tracking: error:")
    assert len(err.splitlines()) == 1
    for needle in needles:
        assert needle in err
    return err


def test_bad_inputs_exit_nonzero(tmp_path, capsys):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert main([str(garbage)]) != 0
    _assert_one_line_error(capsys, "garbage.json", "not valid JSON")

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    assert main([str(other)]) != 0
    _assert_one_line_error(capsys, "other.json", "not a tracking predictions file")

    assert main([str(tmp_path / "missing.json")]) != 0
    _assert_one_line_error(capsys, "missing.json")

    record = json.loads(DLTMIX.read_text())["results"][0]
    lost = dict(record, target="123456_09_09_000-050.nii.gz")
    unknown = tmp_path / "unknown_pair.json"
    unknown.write_text(json.dumps({"results": [record, lost]}))
    out_json = tmp_path / "never.json"
    assert main([str(unknown), "--reference", str(TEST_JSON), "--allow_missing", "-o", str(out_json)]) != 0
    _assert_one_line_error(capsys, "123456_09_09_000-050.nii.gz", "lacks")
    assert not out_json.exists()


def test_console_entry_point_process(tmp_path):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2]")
    proc = subprocess.run([sys.executable, "-m", "lesionnet.cli.evaluate_tracking", str(garbage)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "garbage.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "lesionnet.cli.evaluate_tracking", str(DLTMIX)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and DLTMIX_ROW in proc.stdout

"""The main job's last table (nanoparl/report.py): three splits side by side, seeds as mean +- std."""

import json

from nanoparl.report import report


def _results(rows):
    return {name: {"overall": {"accuracy": acc, "steps": 5.0, "ctx_mean": 200.0, "policy": "awareness"}}
            for name, acc in rows.items()}


def test_report_puts_splits_side_by_side_and_groups_seeds(tmp_path):
    test = _results({"oracle": 1.0, "sft_pag": 0.3, "parl_mt_s1": 0.4, "parl_mt_s2": 0.5, "parl_mt_s3": 0.6})
    (tmp_path / "results.json").write_text(json.dumps(dict(test, seed_groups={})))
    (tmp_path / "results_unseen.json").write_text(json.dumps(_results({"sft_pag": 0.05, "parl_mt_s1": 0.1})))
    (tmp_path / "results_val.json").write_text(json.dumps(_results({"sft_pag": 0.7})))
    for stage, seconds in (("sft_pag", 800), ("parl_mt_s1", 300), ("parl_mt_s2", 320), ("parl_mt_s3", 340)):
        (tmp_path / f"{stage}.DONE").write_text(f"{seconds}\n")
    lines = {line.split()[0]: line for line in report(str(tmp_path)).splitlines()[1:-1]}
    assert set(lines) == {"oracle", "sft_pag", "parl_mt"}
    assert lines["oracle"].split()[3:6] == ["1.000", "-", "-"]
    assert lines["sft_pag"].split()[3:6] == ["0.300", "0.050", "0.700"]
    assert lines["sft_pag"].split()[-1] == "800"
    parl = lines["parl_mt"].split()
    assert parl[2] == "3" and parl[3:6] == ["0.500", "+-", "0.100"]  # mean +- sample std of 0.4, 0.5, 0.6
    assert parl[6] == "0.100" and parl[-1] == "320"  # one seed on unseen; mean wall time per seed

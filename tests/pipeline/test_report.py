"""The prune report: typed fields, the JSON and tables they were before the dataclass."""

import json
import types

import numpy as np
import pytest

from mpjax.pipeline import report as report_lib
from mpjax.pipeline.report import MacSummary, PruneReport, format_table, write_report

#: The keys ``report.json`` had when the report was a dict, in its order (all stages run).
OLD_JSON_KEYS = ["source", "method", "pattern", "tome_r", "permuted", "sparsity",
                 "global_sparsity", "skipped", "macs", "acc_dense", "acc_dense_tome",
                 "acc_pruned", "acc_distilled", "distill", "seconds"]  # fmt: skip
#: The dict report's RESULT_KEYS: the quantities of report.md's table.
OLD_RESULT_KEYS = ("source", "tome_r", "permuted", "sparsity", "global_sparsity", "acc_dense",
                   "acc_dense_tome", "acc_pruned", "acc_distilled", "seconds")  # fmt: skip


def _full_report(**changes):
    fields = dict(
        source="vit.npz", method="cast", pattern="2:4", tome_r=1, permuted=True,
        sparsity=np.float64(0.5), global_sparsity=np.float32(0.25),
        skipped={"head/kernel": "10 columns not divisible by 4"},
        macs=MacSummary(dense_gmac=0.0125, pruned_gmac=0.0075, reduction=0.4),
        acc_dense=0.875, acc_dense_tome=0.8625, acc_pruned=0.5, acc_distilled=0.75,
        distill={"steps": 4, "seconds": 1.5}, seconds=2.0,
    )  # fmt: skip
    return PruneReport(**{**fields, **changes})


def test_json_has_the_fields_and_order_of_the_dict_report():
    report = _full_report()
    assert list(report.to_dict()) == OLD_JSON_KEYS
    assert report_lib.TABLE_KEYS == OLD_RESULT_KEYS
    # the dict the job used to build, written the way it used to be written
    old = dict(source="vit.npz", method="cast", pattern="2:4", tome_r=1, permuted=True,
               sparsity=np.float64(0.5), global_sparsity=np.float32(0.25),
               skipped={"head/kernel": "10 columns not divisible by 4"},
               macs={"dense_gmac": 0.0125, "pruned_gmac": 0.0075, "reduction": 0.4},
               acc_dense=0.875, acc_dense_tome=0.8625, acc_pruned=0.5, acc_distilled=0.75,
               distill={"steps": 4, "seconds": 1.5}, seconds=2.0)  # fmt: skip
    jsonable = json.loads(json.dumps(old, default=lambda o: o.tolist()))
    assert report.to_json() == json.dumps(jsonable, indent=2)
    assert json.loads(report.to_json())["macs"]["reduction"] == 0.4


def test_unmeasured_stages_are_left_out_but_macs_stays():
    report = PruneReport(source="vit-ti16", method="magnitude", pattern="unstructured",
                         sparsity=0.3, global_sparsity=0.2, seconds=1.0)  # fmt: skip
    assert list(report.to_dict()) == [k for k in OLD_JSON_KEYS if k not in report_lib.OPTIONAL_KEYS]
    assert json.loads(report.to_json())["macs"] is None
    assert report.to_dict()["skipped"] == {} and not report.permuted


def test_format_table():
    assert format_table(_full_report()) == (
        "dense accuracy                   0.8750\n"
        "dense + ToMe r=1                 0.8625\n"
        "pruned, before distillation      0.5000\n"
        "pruned, after distillation       0.7500\n"
        "sparsity of pruned layers        0.5000\n"
        "layers left dense                1 (report.md says why)\n"
        "MAC reduction                    0.4000\n"
        "MACs per image, dense -> pruned  0.012500 GMAC -> 0.007500 GMAC"
    )
    bare = format_table(_full_report(tome_r=0, acc_dense_tome=None, macs=None, skipped={}))
    assert "ToMe" not in bare and bare.splitlines()[-1] == "MAC reduction                -"


def test_format_table_without_data_or_distillation():
    # no data: no accuracy rows, no raw JSON, one line saying so
    no_data = PruneReport(source="shipped", method="magnitude", pattern="2:4", sparsity=0.5,
                          global_sparsity=0.5, seconds=1.0,
                          macs=MacSummary(0.0125, 0.0075, 0.4, note="24 of 26 ..."))  # fmt: skip
    text = format_table(no_data)
    assert "{" not in text and "accuracy" not in text.splitlines()[0]
    assert "distillation" not in text
    assert text.splitlines()[-2:] == ["MACs: 24 of 26 ...",
                                      "accuracy not measured: pass --data to evaluate"]  # fmt: skip
    # data but no distillation: one pruned row, no "after distillation"
    no_distill = format_table(_full_report(distill=None, acc_distilled=0.5))
    assert "after distillation" not in no_distill and "before distillation" not in no_distill
    assert "pruned accuracy                  0.5000" in no_distill.splitlines()


def test_format_table_of_low_rank():
    report = _full_report(method="lowrank", pattern="unstructured", sparsity=0.46,
                          lowrank={"ranks": {"a": 12, "b": 30}, "params_removed": 0.46,
                                   "stored": "dense"})  # fmt: skip
    lines = format_table(report).splitlines()
    assert "parameters removed (rank-r factors)  0.4600" in lines
    assert "rank kept per layer                  12 to 30 (report.md)" in lines


def test_write_report(tmp_path):
    layers = [
        {"path": f"Transformer/encoderblock_{i}/MlpBlock_0/Dense_0/kernel", "shape": [128, 64],
         "sparsity": 0.5, "pattern": "2:4"}
        for i in (10, 2)
    ]  # fmt: skip
    fits = types.SimpleNamespace(rows=[{"path": layers[1]["path"], "sigma_plus": 1.23456,
                                        "bulk_fraction": 0.9}])  # fmt: skip
    report = _full_report()
    write_report(tmp_path, report, layers, fits)
    assert (tmp_path / "report.json").read_text() == report.to_json()
    assert (tmp_path / "report.png").stat().st_size > 1000
    md = (tmp_path / "report.md").read_text().splitlines()
    assert md[0] == "# mpjax prune: cast 2:4"
    quantities = [line.split(" | ")[0].removeprefix("| ") for line in md[4:14]]
    assert quantities == list(OLD_RESULT_KEYS)
    assert "| global_sparsity | 0.25 |" in md and "| acc_dense_tome | 0.8625 |" in md
    assert ("| MACs per image, dense -> pruned | 0.012500 GMAC -> 0.007500 GMAC (40.00% fewer) |"
            in md)  # fmt: skip
    rows = [line for line in md if line.startswith("| Transformer/")]
    assert rows == [
        "| Transformer/encoderblock_2/MlpBlock_0/Dense_0/kernel | [128, 64] | 0.500 | 2:4 "
        "| 1.2346 | 0.9000 |",
        "| Transformer/encoderblock_10/MlpBlock_0/Dense_0/kernel | [128, 64] | 0.500 | 2:4 "
        "| - | - |",
    ]  # fmt: skip
    assert md[-2:] == ["Left dense:", "- head/kernel: 10 columns not divisible by 4"]


def test_macs_are_in_gmac_everywhere():
    assert report_lib._macs_text(17.5) == "17.5000 GMAC"
    assert report_lib._macs_text(0.0125) == "0.012500 GMAC"  # was "12.5000 MMAC"
    assert "MMAC" not in format_table(_full_report())


def test_reports_are_immutable():
    with pytest.raises(AttributeError):
        _full_report().sparsity = 0.1

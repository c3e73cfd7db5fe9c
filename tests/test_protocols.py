"""Protocols: trial expansion, the fit-data guard, and what fit really sees end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import test_runner_fixtures as toy

from benchmark.errors import ConfigError, ContractError
from benchmark.run import protocols
from benchmark.run.runner import run
from benchmark.sample import Sample

MVTEC = ["bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope",
         "tire"]


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    toy.activate(monkeypatch)
    yield
    toy.unregister()


def test_one_class_trials():
    t = protocols.trials("one_class", "toy", ["a", "b", "c"], selected=["c", "a"])
    assert [(x.train_category, x.test_categories) for x in t] == [("c", ("c",)), ("a", ("a",))]


def test_zero_shot_uses_paper_aux_and_excludes_it_from_tests():
    t = protocols.trials("zero_shot", "mvtec3d", MVTEC)
    assert [x.train_category for x in t] == ["carrot", "cookie", "dowel"]
    for trial in t:
        assert trial.train_category not in trial.test_categories
        assert len(trial.test_categories) == 9
    eye = protocols.trials("zero_shot", "eyecandies", ["Confetto", "LicoriceSandwich",
                                                        "PeppermintCandy", "Marshmallow"])
    assert [x.train_category for x in eye] == ["Confetto", "LicoriceSandwich", "PeppermintCandy"]


def test_zero_shot_needs_aux_for_other_datasets():
    with pytest.raises(ConfigError, match="--aux"):
        protocols.trials("zero_shot", "toy", ["a", "b"])
    with pytest.raises(ConfigError, match="unknown category"):
        protocols.trials("zero_shot", "toy", ["a", "b"], aux=["zz"])


def test_zero_shot_pairs_is_every_ordered_pair():
    t = protocols.trials("zero_shot_pairs", "mvtec3d", MVTEC)
    pairs = {(x.train_category, c) for x in t for c in x.test_categories}
    assert len(t) == 10 and len(pairs) == 90
    assert all(a != b for a, b in pairs)
    rows = protocols.trials("zero_shot_pairs", "mvtec3d", MVTEC, aux=["bagel", "dowel"])
    assert [x.train_category for x in rows] == ["bagel", "dowel"]
    assert all(len(x.test_categories) == 9 for x in rows)


def test_cross_dataset_trials():
    t = protocols.trials("cross_dataset", "eyecandies", ["Marshmallow", "Confetto"],
                         train_dataset="mvtec3d", train_categories=MVTEC)
    assert [x.train_category for x in t] == ["carrot", "cookie", "dowel"]
    assert all(x.test_categories == ("Marshmallow", "Confetto") for x in t)
    with pytest.raises(ConfigError, match="training dataset"):
        protocols.trials("cross_dataset", "toy", ["a"])


def test_unknown_protocol():
    with pytest.raises(ConfigError, match="unknown protocol"):
        protocols.trials("few_shot", "toy", ["a"])


def _sample(category: str, split: str, label: int) -> Sample:
    pts = np.zeros((3, 3), np.float32)
    return Sample(id=f"{category}-{split}", dataset="toy", category=category, split=split,
                  defect="bump" if label else "good", points=pts, label=label)


def test_fit_data_guard_rejects_foreign_samples():
    ok = protocols.FitData([_sample("a", "train", 0)], dataset="toy", category="a", split="train")
    assert [s.id for s in ok] == ["a-train"]
    leak = protocols.FitData([_sample("b", "train", 0)], dataset="toy", category="a",
                             split="train")
    with pytest.raises(ContractError, match="category 'b'"):
        list(leak)
    wrong_split = protocols.FitData([_sample("a", "test", 1)], dataset="toy", category="a",
                                    split="train")
    with pytest.raises(ContractError, match="split 'test'"):
        wrong_split[0]
    anomalous = protocols.FitData([_sample("a", "train", 1)], dataset="toy", category="a",
                                  split="train")
    with pytest.raises(ContractError, match="anomalous"):
        anomalous[0]
    with pytest.raises(ContractError, match="also tested"):
        protocols.FitData([], dataset="toy", category="a", split="test", forbidden=["a"])


def _fits(log):
    return {tuple(r["categories"]): r for r in toy.read_log(log)}


def _tested(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for r in rows:
        out.setdefault((r["method"], r["train_category"]), set()).add(r["test_category"])
    return out


def test_one_class_end_to_end(tmp_path):
    log = tmp_path / "fit.log"
    s = run(toy.toy_spec(methods=[{"name": "toy_nn", "args": {"fit_log": str(log)}}],
                         categories=["alpha", "gamma"]), out=tmp_path / "run")
    assert not s.failures
    fits = _fits(log)
    assert set(fits) == {("alpha",), ("gamma",)}
    assert all(f["splits"] == ["train"] and f["labels"] == [0] for f in fits.values())
    assert _tested(tmp_path / "run") == {("toy_nn", "alpha"): {"alpha"},
                                         ("toy_nn", "gamma"): {"gamma"}}


def test_zero_shot_end_to_end(tmp_path):
    log = tmp_path / "fit.log"
    s = run(toy.toy_spec(methods=[{"name": "toy_zs", "args": {"fit_log": str(log)}},
                                  {"name": "toy_nn", "args": {"fit_log": str(log)}}],
                         protocol="zero_shot", aux_categories=["alpha", "beta"]),
            out=tmp_path / "run")
    assert not s.failures
    records = toy.read_log(log)
    zs = [r for r in records if r["splits"] == ["test"]]
    oc = [r for r in records if r["splits"] == ["train"]]
    # the zero-shot detector gets the labelled test split of the aux category only
    assert sorted(r["categories"][0] for r in zs) == ["alpha", "beta"]
    assert all(r["labels"] == [0, 1] for r in zs)
    # a one-class detector under zero_shot gets the normal train split of the aux category
    assert sorted(r["categories"][0] for r in oc) == ["alpha", "beta"]
    tested = _tested(tmp_path / "run")
    assert tested[("toy_zs", "alpha")] == {"beta", "gamma", "delta"}
    assert tested[("toy_zs", "beta")] == {"alpha", "gamma", "delta"}


def test_zero_shot_pairs_end_to_end(tmp_path):
    log = tmp_path / "fit.log"
    s = run(toy.toy_spec(methods=[{"name": "toy_zs", "args": {"fit_log": str(log)}}],
                         protocol="zero_shot_pairs", categories=["alpha", "beta", "gamma"]),
            out=tmp_path / "run")
    assert not s.failures and len(s.jobs) == 3
    # even a zero-shot detector gets only normal train data of class A
    assert all(r["splits"] == ["train"] and r["labels"] == [0] for r in toy.read_log(log))
    tested = _tested(tmp_path / "run")
    assert tested[("toy_zs", "alpha")] == {"beta", "gamma"}
    assert sum(len(v) for v in tested.values()) == 6


def test_cross_dataset_end_to_end(tmp_path):
    log = tmp_path / "fit.log"
    s = run(toy.toy_spec(methods=[{"name": "toy_zs", "args": {"fit_log": str(log)}}],
                         protocol="cross_dataset", train_dataset="toy",
                         train_dataset_options={"organized": True, "categories": 2},
                         aux_categories=["beta"], categories=["alpha", "beta", "gamma"]),
            out=tmp_path / "run")
    assert not s.failures
    [fit] = toy.read_log(log)
    assert fit["categories"] == ["beta"] and fit["splits"] == ["test"]
    # a different dataset: its category 'beta' does not collide with the tested 'beta'
    assert _tested(tmp_path / "run")[("toy_zs", "beta")] == {"alpha", "beta", "gamma"}

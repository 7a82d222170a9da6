"""A/B testing: deterministic, split-respecting assignment; the exposure log; replay intervals; the guardrail."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from baselines.serving.ab import Experiment, ExposureLog, guardrail, replay


def test_assignment_is_deterministic_follows_the_split_and_a_new_salt_reshuffles():
    experiment = Experiment("e", "s1", ("a", "b", "c"), (0.5, 0.3, 0.2))
    units = [f"user-{i}" for i in range(20_000)]
    arms = [experiment.assign(unit) for unit in units]
    assert arms == [Experiment("e", "s1", ("a", "b", "c"), (0.5, 0.3, 0.2)).assign(unit) for unit in units]
    shares = {arm: arms.count(arm) / len(arms) for arm in ("a", "b", "c")}
    assert all(abs(shares[arm] - share) < 0.015 for arm, share in zip("abc", (0.5, 0.3, 0.2)))
    other = [Experiment("e", "s2", ("a", "b", "c"), (0.5, 0.3, 0.2)).assign(unit) for unit in units]
    agreement = np.mean([x == y for x, y in zip(arms, other)])
    assert abs(agreement - (0.5 ** 2 + 0.3 ** 2 + 0.2 ** 2)) < 0.02          # independent reshuffle


@pytest.mark.parametrize("arms, split", [(("a",), (1.0,)), (("a", "a"), (0.5, 0.5)), (("a", "b"), (0.6, 0.6)),
                                         (("a", "b"), (1.0, 0.0)), (("a", "b"), (1.0,))])
def test_bad_experiments_are_refused(arms, split):
    with pytest.raises(ValueError):
        Experiment("e", "s", arms, split)


def test_exposure_log_keeps_every_line_under_concurrent_writers(tmp_path):
    log, experiment = ExposureLog(tmp_path / "exposures.jsonl"), Experiment()

    def write(worker):
        for i in range(200):
            log.log(experiment, f"{worker}-{i}", experiment.assign(f"{worker}-{i}"), request_id=f"r{worker}{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = log.read()
    assert len(rows) == 800 and len({row["unit"] for row in rows}) == 800
    assert all(row["arm"] == experiment.assign(row["unit"]) for row in rows)
    (tmp_path / "exposures.jsonl").open("a").write("{broken\n")
    with pytest.raises(ValueError, match="exposures.jsonl:801"):
        log.read()


def test_replay_finds_a_real_effect_paired_and_not_a_null_one():
    rng = np.random.default_rng(0)
    units = [f"q{i}" for i in range(1000)]
    control = rng.uniform(0, 1, 1000)
    experiment = Experiment("e", "s", ("control", "treatment"), (0.5, 0.5))
    better = replay(experiment, units, {"control": control, "treatment": control + 0.05})["comparisons"]["treatment"]
    assert better["paired_verdict"] == "holds" and better["paired_difference"] == pytest.approx(0.05)
    assert better["paired_interval"][0] > 0 and better["paired_t_p"] == 0.0   # a constant +0.05 on every unit
    null = replay(experiment, units, {"control": control, "treatment": control.copy()})["comparisons"]["treatment"]
    assert null["paired_difference"] == 0 and null["paired_verdict"] == "unresolved" and null["paired_t_p"] == 1.0
    assert null["ab_interval"][0] < null["ab_difference"] < null["ab_interval"][1]
    with pytest.raises(ValueError, match="arms"):
        replay(experiment, units, {"control": control})
    with pytest.raises(ValueError, match="one value per unit"):
        replay(experiment, units, {"control": control, "treatment": control[:10]})


def test_guardrail_fails_a_slower_treatment():
    fast, slow = np.linspace(1, 10, 100), np.linspace(1, 10, 100) * 1.5
    result = guardrail({"control": fast, "treatment": slow, "same": fast}, "control", max_ratio=1.2)
    assert not result["treatment"]["passes"] and result["same"]["passes"]
    assert result["treatment"]["ratio"] == pytest.approx(1.5)

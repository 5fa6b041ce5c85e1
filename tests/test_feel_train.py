"""feel-train's reporting (edgebed.benchmarks.feel_train)."""


def test_feel_train_speedup_is_time_to_individual_learnings_accuracy():
    from edgebed.benchmarks.feel_train import _speedups

    def curve(points):
        return [{"elapsed_s": t, "accuracy": a} for t, a in points]

    cell = {"individual": {"accuracy": 0.6, "time_s": 30.0, "curve": curve([(30.0, 0.6)])},
            "proposed": {"accuracy": 0.8, "time_s": 50.0,
                         "curve": curve([(10.0, 0.4), (15.0, 0.61), (20.0, 0.5), (50.0, 0.8)])},
            "slow": {"accuracy": 0.5, "time_s": 90.0, "curve": curve([(90.0, 0.5)])}}
    assert _speedups(cell) == {"individual": 1.0, "proposed": 2.0, "slow": None}

from breastseg.registry import decide


def test_gate_promotes_only_when_at_least_as_good():
    assert decide(0.7, None, 0.0)            # no champion yet
    assert decide(0.7, 0.7, 0.0)             # ties promote with zero margin
    assert not decide(0.69, 0.7, 0.0)        # worse: never
    assert not decide(0.71, 0.7, 0.02)       # better, but not by the margin
    assert decide(0.73, 0.7, 0.02)
    assert not decide(None, 0.5, 0.0)        # no score: never

"""Confirming a boot by its iSCSI session (pure decision; README: Operator workflow)."""

from appliance.control.operations import session_confirms
from appliance.control.state import HostState, Trial

TRIAL = HostState(trial=Trial(generation=4, previous=3, started=100.0, kernel_served_at=110.0), last_known_good=3)


def test_trial_confirmed_once_the_new_session_stays_up_long_enough():
    assert session_confirms(TRIAL, 4, session_since=130.0, now=249.0, confirm_after=120) is None
    assert session_confirms(TRIAL, 4, session_since=130.0, now=250.0, confirm_after=120) == "iSCSI session up for 120 s"


def test_the_old_systems_session_does_not_confirm_a_trial():
    # Logged in long before the trial kernel was served: that is the previous boot.
    assert session_confirms(TRIAL, 4, session_since=10.0, now=1000.0, confirm_after=120) is None


def test_a_trial_whose_kernel_was_never_served_is_not_confirmed():
    pending = HostState(trial=Trial(generation=4, previous=3, started=100.0))
    assert session_confirms(pending, 4, session_since=130.0, now=1000.0, confirm_after=120) is None


def test_a_steady_session_makes_the_served_generation_last_known_good():
    assert session_confirms(HostState(last_known_good=2), 3, 0.0, 200.0, 120) == "iSCSI session stayed up"
    assert session_confirms(HostState(last_known_good=3), 3, 0.0, 200.0, 120) is None
    assert session_confirms(HostState(), None, 0.0, 200.0, 120) is None

"""VAFT weights follow the business-value hierarchy conversion >= click >= impression and stay bounded."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.simulator.history import ACTION_CLICK, ACTION_CONVERSION, ACTION_IMPRESSION
from agents.hhd.losses import vaft_raw_weights, vaft_weights

rates = st.floats(1e-3, 1.0)  # products stay above the 1e-6 floor of the denominator


@settings(max_examples=200, deadline=None)
@given(ecpm=st.floats(1e-3, 1e5), pctr=rates, pcvr=rates, clip=st.floats(1.0, 100.0))
def test_action_hierarchy(ecpm, pctr, pcvr, clip):
    actions = np.array([ACTION_IMPRESSION, ACTION_CLICK, ACTION_CONVERSION])
    args = (actions, np.full(3, ecpm), np.full(3, pctr), np.full(3, pcvr))
    raw = vaft_raw_weights(*args)
    np.testing.assert_allclose(raw, [ecpm, ecpm / pctr, ecpm / (pctr * pcvr)], rtol=1e-9)
    w = vaft_weights(*args, scale=raw.mean(), clip=clip)
    assert w[0] <= w[1] <= w[2] <= clip
    assert (w > 0).all()


def test_weights_grow_with_ecpm_and_normalise_to_scale():
    action = np.array([1, 1, 2, 3])
    ecpm, pctr, pcvr = np.array([1.0, 2.0, 2.0, 2.0]), np.full(4, 0.5), np.full(4, 0.25)
    raw = vaft_raw_weights(action, ecpm, pctr, pcvr)
    np.testing.assert_allclose(raw, [1.0, 2.0, 4.0, 16.0])
    w = vaft_weights(action, ecpm, pctr, pcvr, scale=raw.mean(), clip=1e9)
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vaft_weights(action, ecpm, pctr, pcvr, scale=raw.mean(), clip=2.0).max(), 2.0)

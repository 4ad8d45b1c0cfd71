"""Regression tests from the adversarial review of the compact container
short form (ints of 1/4/8 bytes, 1-byte lengths inside containers): an
item whose short form fits its destination's limit is kept in that form,
never pickled and then refused (the encoder once demanded 16 bytes of
headroom per item, sized for the older 9-byte ints).
"""

import pickle

import pytest

import shmring


@pytest.mark.parametrize(
    "key, short_len",
    [
        ((1, 2), 9),  # TUPLE + count(4) + 2 x INT1
        (("ab", 1), 11),  # TUPLE + count(4) + SHORT_STR 'ab' + INT1
        ((None,), 6),  # TUPLE + count(4) + NONE (refused before f4a3e2c too)
    ],
)
def test_a_key_whose_short_form_fits_max_key_is_stored(key, short_len):
    max_key = 16
    assert short_len <= max_key
    d = shmring.Dict(capacity=4, max_key=max_key, max_value=16)
    # ValueError: the key is 18 bytes once encoded, more than this dict's
    # max_key of 16 (its short form is 9 bytes).
    d[key] = 1
    assert d[key] == 1


def test_a_value_whose_short_form_fits_max_value_is_stored():
    value = [1, 2, 3, 4]  # short form: 5 + 4 x 2 = 13 bytes; pickle: 23
    assert 13 <= 16 < len(pickle.dumps(value, 5))
    d = shmring.Dict(capacity=4, max_key=16, max_value=16)
    d["k"] = value
    assert d["k"] == value

"""`POWERX_WEB_WORKERS`: how many API processes `powerx version serve` starts."""

from __future__ import annotations

import pytest

from powerx_governance.settings import load_settings


def test_one_process_unless_told() -> None:
    assert load_settings({}).web_workers == 1
    assert load_settings({"POWERX_WEB_WORKERS": " "}).web_workers == 1
    assert load_settings({"POWERX_WEB_WORKERS": "4"}).web_workers == 4


@pytest.mark.parametrize("value", ["0", "65", "-1", "two", "1.5"])
def test_a_bad_count_names_the_variable(value: str) -> None:
    expected = "POWERX_WEB_WORKERS must be a whole number of processes from 1 to 64"
    with pytest.raises(ValueError, match=expected):
        load_settings({"POWERX_WEB_WORKERS": value})

"""The README's bounds of the number settings, each at its edge (*Settings*: "at most a day for the delays in seconds,
a week for the task timeout, a year for the hours, 100 retries and 64 connections"; the task timeout at least a
second, the build TTL at least an hour and the task timeout, the lock wait at most half of it). Review: only nan, inf
and 1e12 were tried, so a bound moved to ten times itself passed every test.
"""

from __future__ import annotations

import pytest

from greenery import config

DAY_SECONDS, WEEK_MINUTES, YEAR_HOURS = 86_400, 10_080, 8_784  # a year: 366 days
# name -> (the lowest value taken, the highest), each refused one step beyond
BOUNDS = {
    "GREENERY_RETRY_DELAY_SECONDS": (0, DAY_SECONDS),
    "GREENERY_ALERT_RETRY_DELAY_SECONDS": (0, DAY_SECONDS),
    "GREENERY_RETRIES": (0, 100),
    "GREENERY_ALERT_RETRIES": (0, 100),
    "GREENERY_VALIDATION_CONNECTIONS": (1, 64),
    "GREENERY_ALERT_SUPPRESS_HOURS": (0, YEAR_HOURS),
    "GREENERY_BUILD_TTL_HOURS": (1, YEAR_HOURS),
    "GREENERY_TASK_TIMEOUT_MINUTES": (1 / 60, WEEK_MINUTES),
    "GREENERY_PUBLISH_LOCK_WAIT_SECONDS": (1, 1800),  # half the default task timeout, an hour
}
WHOLE = {"GREENERY_RETRIES", "GREENERY_ALERT_RETRIES", "GREENERY_VALIDATION_CONNECTIONS"}


def _env(name: str, value) -> dict[str, str]:
    env = {name: repr(value) if isinstance(value, float) else str(value)}
    if name == "GREENERY_TASK_TIMEOUT_MINUTES":  # a longer timeout needs a build TTL as long (an unset one follows)
        env["GREENERY_BUILD_TTL_HOURS"] = str(YEAR_HOURS)
    return env


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_each_number_setting_takes_its_bounds_and_refuses_a_step_beyond(name):
    low, high = BOUNDS[name]
    step = 1 if name in WHOLE else 0.001
    for value in (low, high):
        config.get(_env(name, value))  # taken
    for value in (low - step, high + step):
        with pytest.raises(config.SettingError, match=f"^{name}="):
            config.get(_env(name, value))


@pytest.mark.parametrize("value", ["-1", "0", "0.01"])
def test_a_task_timeout_under_a_second_is_told_its_floor(value):
    """Operator trial: -1 was told "expected a value from 0 to 10080", and 0 is refused too."""
    with pytest.raises(
        config.SettingError, match=rf"^GREENERY_TASK_TIMEOUT_MINUTES='{value}': expected at least 1 sec"
    ):
        config.get({"GREENERY_TASK_TIMEOUT_MINUTES": value})
    with pytest.raises(config.SettingError, match=r"expected a value at most 10080$"):
        config.get({"GREENERY_TASK_TIMEOUT_MINUTES": "10081"})


def test_the_build_ttl_is_at_least_the_task_timeout_and_the_lock_wait_at_most_half_of_it():
    two_hours = {"GREENERY_TASK_TIMEOUT_MINUTES": "120"}
    assert config.get({**two_hours, "GREENERY_BUILD_TTL_HOURS": "2"}).build_ttl.total_seconds() == 7200
    with pytest.raises(config.SettingError, match=r"^GREENERY_BUILD_TTL_HOURS='1\.99': expected at least 2 h"):
        config.get({**two_hours, "GREENERY_BUILD_TTL_HOURS": "1.99"})
    assert config.get(two_hours).build_ttl.total_seconds() == 48 * 3600  # the default is longer already
    week = {"GREENERY_TASK_TIMEOUT_MINUTES": str(WEEK_MINUTES)}
    assert config.get(week).build_ttl.total_seconds() == WEEK_MINUTES * 60  # an unset TTL follows the timeout
    assert config.get({**two_hours, "GREENERY_PUBLISH_LOCK_WAIT_SECONDS": "3600"}).publish_lock_wait.seconds == 3600
    with pytest.raises(config.SettingError, match=r"^GREENERY_PUBLISH_LOCK_WAIT_SECONDS='3601': expected at most 3600"):
        config.get({**two_hours, "GREENERY_PUBLISH_LOCK_WAIT_SECONDS": "3601"})

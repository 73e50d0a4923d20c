"""Flags over environment over manifests; dev mode; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from crank.errors import UsageError
from crank.manifest import Manifest, load_manifest
from crank.runtime import config as config_module
from crank.runtime.config import (
    DEFAULT_BROKER_URL,
    MAX_HTTP_PROCESSES,
    RuntimeConfig,
    build_config,
)
from crank.runtime.cpus import usable_cpus

MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "http_workers" / "crank.yaml"


@pytest.fixture
def manifests() -> list[Manifest]:
    return [load_manifest(MANIFEST)]


def test_defaults_come_from_the_manifests(manifests: list[Manifest]) -> None:
    config = build_config(manifests, env={})
    assert (config.broker_url, config.host, config.port) == (DEFAULT_BROKER_URL, "127.0.0.1", 8080)
    assert (config.min_workers, config.max_workers, config.target_queue_per_worker) == (1, 3, 5)
    assert config.manifest_paths == (MANIFEST,)
    assert config.dynamic_pool and config.api_token is None and config.daily_budget_usd is None


def test_dev_mode_has_no_pool_of_zero_that_would_take_tasks(manifests: list[Manifest]) -> None:
    with pytest.raises(UsageError, match="--min-workers 0 would start no worker process"):
        build_config(manifests, env={}, mode="dev", min_workers=0)
    # the HTTP API alone stays possible in dev mode
    config = build_config(manifests, env={}, mode="dev", max_workers=0)
    assert (config.min_workers, config.max_workers) == (0, 0)


def test_flags_win_over_environment(manifests: list[Manifest]) -> None:
    env = {
        "CRANK_BROKER_URL": "redis://h:1/0",
        "CRANK_API_TOKEN": "t",
        "CRANK_DAILY_BUDGET_USD": "2.5",
        "CRANK_MAX_PENDING": "7",
        "CRANK_GRACE_S": "3",
    }
    config = build_config(
        manifests, env=env, broker_url="sqlite:///x.db", min_workers=2, max_workers=6
    )
    assert config.broker_url == "sqlite:///x.db"
    assert (config.min_workers, config.max_workers) == (2, 6)
    got = (config.api_token, config.daily_budget_usd, config.max_pending_tasks, config.grace_s)
    assert got == ("t", 2.5, 7, 3.0)
    assert build_config(manifests, env=env).broker_url == "redis://h:1/0"


def test_replace_unlive_s_from_the_environment_unless_given(manifests: list[Manifest]) -> None:
    assert build_config(manifests, env={}).replace_unlive_s == 20.0
    env = {"CRANK_REPLACE_UNLIVE_S": "0"}
    assert build_config(manifests, env=env).replace_unlive_s == 0.0  # never
    assert build_config(manifests, env=env, replace_unlive_s=5.0).replace_unlive_s == 5.0


def test_single_bound_flag_keeps_the_pool_consistent(manifests: list[Manifest]) -> None:
    assert (build_config(manifests, env={}, min_workers=5).max_workers) == 5
    assert (build_config(manifests, env={}, max_workers=1).min_workers) == 1


def test_max_workers_zero_is_the_api_alone(manifests: list[Manifest]) -> None:
    config = build_config(manifests, env={}, max_workers=0)
    assert (config.min_workers, config.max_workers, config.dynamic_pool) == (0, 0, False)


def test_dev_mode_is_a_fixed_small_pool(manifests: list[Manifest]) -> None:
    config = build_config(manifests, env={}, mode="dev")
    assert (config.min_workers, config.max_workers, config.dynamic_pool) == (1, 1, False)


def test_public_view_hides_secrets() -> None:
    config = RuntimeConfig(broker_url="redis://user:pw@h:6379/0", api_token="secret")
    public = config.public()
    assert public["broker_url"] == "redis://user:***@h:6379/0"
    assert public["auth"] is True
    assert "secret" not in repr(config) and "secret" not in str(public)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRANK_DAILY_BUDGET_USD": "lots"}, "CRANK_DAILY_BUDGET_USD='lots' is not a number"),
        ({"CRANK_DAILY_BUDGET_USD": "-1"}, "daily budget must be positive"),
        ({"CRANK_DAILY_BUDGET_USD": "inf"}, "CRANK_DAILY_BUDGET_USD='inf' is not a finite number"),
        ({"CRANK_GRACE_S": "nan"}, "CRANK_GRACE_S='nan' is not a finite number"),
        ({"CRANK_GRACE_S": "-1"}, r"grace_s must be a number of seconds, 0 or more \(got -1.0\)"),
        ({"CRANK_REPLACE_UNLIVE_S": "soon"}, "CRANK_REPLACE_UNLIVE_S='soon' is not a number"),
        ({"CRANK_REPLACE_UNLIVE_S": "inf"}, "CRANK_REPLACE_UNLIVE_S='inf' is not a finite"),
        (
            {"CRANK_REPLACE_UNLIVE_S": "-1"},
            r"replace_unlive_s must be a number of seconds, 0 or more \(got -1.0\)",
        ),
        ({"CRANK_MAX_PENDING": "0"}, r"CRANK_MAX_PENDING must be at least 1 \(got 0\)"),
        ({"CRANK_MAX_INFLIGHT": "0"}, r"CRANK_MAX_INFLIGHT must be at least 1 \(got 0\)"),
        ({"CRANK_MAX_BODY_BYTES": "-5"}, r"CRANK_MAX_BODY_BYTES must be at least 1 \(got -5\)"),
        ({"CRANK_UI": "maybe"}, "console mode 'maybe' is not one of on, readonly, off"),
        ({"CRANK_ACCESS_LOG": "some"}, "access log mode 'some' is not one of on, errors, off"),
        (
            {"CRANK_RESULT_SAFETY_POLL_S": "soon"},
            "environment variable CRANK_RESULT_SAFETY_POLL_S='soon' is not a number",
        ),
        ({"CRANK_RESULT_SAFETY_POLL_S": "nan"}, "CRANK_RESULT_SAFETY_POLL_S='nan' is not a finite"),
        (
            {"CRANK_RESULT_SAFETY_POLL_S": "0"},
            r"CRANK_RESULT_SAFETY_POLL_S must be more than 0 \(got 0\)",
        ),
    ],
)
def test_bad_environment_is_a_usage_error(
    manifests: list[Manifest], env: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        build_config(manifests, env=env)


@pytest.mark.parametrize(
    ("value", "mode"), [(None, "on"), ("", "on"), ("readonly", "readonly"), (" OFF ", "off")]
)
def test_crank_ui_chooses_the_console_mode(
    manifests: list[Manifest], value: str | None, mode: str
) -> None:
    env = {} if value is None else {"CRANK_UI": value}
    config = build_config(manifests, env=env)
    assert config.ui == mode
    assert config.public()["ui"] == mode


@pytest.mark.parametrize(
    ("value", "mode"), [(None, "on"), ("", "on"), ("errors", "errors"), (" OFF ", "off")]
)
def test_crank_access_log_chooses_which_requests_are_logged(
    manifests: list[Manifest], value: str | None, mode: str
) -> None:
    env = {} if value is None else {"CRANK_ACCESS_LOG": value}
    config = build_config(manifests, env=env)
    assert config.access_log == mode
    assert config.public()["access_log"] == mode


@pytest.mark.parametrize(
    ("value", "processes"), [(None, 1), ("", 1), ("3", 3), ("auto", None), (" Auto ", None)]
)
def test_crank_http_processes_is_a_number_or_auto(
    manifests: list[Manifest], value: str | None, processes: int | None
) -> None:
    env = {} if value is None else {"CRANK_HTTP_PROCESSES": value}
    config = build_config(manifests, env=env)
    # auto: one per CPU this process may use
    assert config.http_processes == (processes or min(usable_cpus(), MAX_HTTP_PROCESSES))
    assert config.public()["http_processes"] == config.http_processes


def test_auto_http_processes_follow_the_cpus_and_stay_within_the_bound(
    manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"CRANK_HTTP_PROCESSES": "auto"}
    for cpus, processes in ((1, 1), (6, 6), (200, MAX_HTTP_PROCESSES)):
        monkeypatch.setattr(config_module, "usable_cpus", lambda cpus=cpus: cpus)
        assert build_config(manifests, env=env).http_processes == processes
    with pytest.raises(UsageError, match="CRANK_HTTP_PROCESSES='two' is not a number or 'auto'"):
        build_config(manifests, env={"CRANK_HTTP_PROCESSES": "two"})

"""The strict environment readers behind flagdash/settings.py."""

from __future__ import annotations

import os
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from flagdash.env import env_bool, env_int, env_list, env_str, secret_from_file

NAME = "FLAGDASH_TEST_SETTING"


@pytest.fixture(autouse=True)
def _unset(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)


# --- env_str ------------------------------------------------------------------------------------


def test_env_str_returns_the_value_or_the_default(monkeypatch):
    assert env_str(NAME) == ""
    assert env_str(NAME, "fallback") == "fallback"
    monkeypatch.setenv(NAME, "value")
    assert env_str(NAME, "fallback") == "value"


# --- env_bool -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " true "])
def test_env_bool_reads_true_spellings(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    assert env_bool(NAME, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", ""])
def test_env_bool_reads_false_spellings(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    assert env_bool(NAME, True) is False


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_unset_gives_the_default(default):
    assert env_bool(NAME, default) is default


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "t rue", "y"])
def test_env_bool_refuses_anything_else(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(ImproperlyConfigured, match=NAME):
        env_bool(NAME, False)


# --- env_int ------------------------------------------------------------------------------------


def test_env_int_reads_an_integer(monkeypatch):
    monkeypatch.setenv(NAME, "42")
    assert env_int(NAME, 7) == 42


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_env_int_unset_or_blank_gives_the_default(monkeypatch, raw):
    if raw is not None:
        monkeypatch.setenv(NAME, raw)
    assert env_int(NAME, 7) == 7


@pytest.mark.parametrize("raw", ["ten", "1.5", "8000abc", "0x10"])
def test_env_int_refuses_a_non_integer(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be an integer"):
        env_int(NAME, 7)


def test_env_int_refuses_a_value_below_the_minimum(monkeypatch):
    monkeypatch.setenv(NAME, "0")
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be at least 1"):
        env_int(NAME, 8000, minimum=1)


def test_env_int_accepts_the_minimum_itself(monkeypatch):
    monkeypatch.setenv(NAME, "1")
    assert env_int(NAME, 8000, minimum=1) == 1


# --- env_list -----------------------------------------------------------------------------------


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv(NAME, " a.example.com, b.example.com ,,c ")
    assert env_list(NAME) == ["a.example.com", "b.example.com", "c"]


def test_env_list_unset_gives_the_parsed_default():
    assert env_list(NAME) == []
    assert env_list(NAME, "127.0.0.1,localhost") == ["127.0.0.1", "localhost"]


def test_env_list_set_but_empty_is_an_empty_list_not_the_default(monkeypatch):
    monkeypatch.setenv(NAME, "")
    assert env_list(NAME, "127.0.0.1") == []


# --- secret_from_file ---------------------------------------------------------------------------


def test_secret_from_file_creates_a_private_file_once(tmp_path):
    path = tmp_path / "nested" / "secret_key"

    secret = secret_from_file(path)

    assert len(secret) >= 50
    assert path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_from_file_reuses_the_stored_secret(tmp_path):
    path = tmp_path / "secret_key"
    first = secret_from_file(path)
    mtime = path.stat().st_mtime_ns

    assert secret_from_file(path) == first
    assert path.stat().st_mtime_ns == mtime


def test_secret_from_file_keeps_a_secret_written_by_someone_else(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("operator-provided-secret\n")

    assert secret_from_file(path) == "operator-provided-secret"


def test_secret_from_file_uses_the_winner_when_another_process_creates_it_first(
    tmp_path, monkeypatch
):
    path = tmp_path / "secret_key"
    real_open = os.open

    def racing_open(file, flags, mode=0o777):
        # Another process writes the file between our read and our exclusive create.
        path.write_text("the-other-process-won\n")
        return real_open(file, flags, mode)

    monkeypatch.setattr(os, "open", racing_open)

    assert secret_from_file(path) == "the-other-process-won"


def test_each_new_secret_is_different(tmp_path):
    assert secret_from_file(tmp_path / "a") != secret_from_file(tmp_path / "b")


def test_an_empty_secret_file_is_refused_rather_than_used(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("\n")
    with pytest.raises(ImproperlyConfigured, match="is empty"):
        secret_from_file(path)

"""The constants the R client shares with Python, asserted against the one contract file both
test suites read (``python/yws/contract/shared.json``; the R package carries a byte-identical
copy as ``inst/contract.json`` and ``tests/testthat/test-yws-contract.R`` checks its side)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from yws.config import SettingsError, check_identifier
from yws.contract.spec import Bands
from yws.deploy.jobs_client import END_STATES, SUCCESS_STATE
from yws.errors import InvalidValueError
from yws.model.registry import check_alias
from yws.scoring.results import VIEWS
from yws.storage import StorageError, check_literal

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "python" / "yws" / "contract" / "shared.json"
CONTRACT = json.loads(SHARED.read_text())

# Strings on both sides of each rule, with the ones a lax pattern lets through (a trailing
# newline, which `$` matches before when a pattern is used with re.match).
PROBES = ["b1", "2026-08-31", "a.b:c_d-e", "x" * 128, "x" * 129, "", "b\n", "b 1", "b'1",
          "b;1", "b\\1", "_x", "1x", "Ünï", "a" * 255, "a" * 256, "a-b"]


def test_the_r_package_carries_the_same_file():
    assert (ROOT / "r_client" / "inst" / "contract.json").read_bytes() == SHARED.read_bytes()


def test_bands_are_the_specs():
    assert tuple(CONTRACT["bands"]) == Bands.NAMES


def test_views_exist_in_sql_and_cover_the_read_api():
    created = {m.group(1) for p in (ROOT / "sql" / "20_views").glob("*.sql")
               for m in re.finditer(r"CREATE OR REPLACE VIEW\s+\S*?\.?(v_yws_\w+)",
                                    p.read_text(), re.I)}
    assert set(CONTRACT["views"]) <= created
    assert set(VIEWS.values()) <= set(CONTRACT["views"])


def _accepts(check, value) -> bool:
    try:
        check(value)
    except (SettingsError, StorageError):
        return False
    return True


@pytest.mark.parametrize("value", PROBES)
def test_batch_ids_follow_the_shared_pattern(value):
    expected = re.fullmatch(CONTRACT["batch_id_pattern"].strip("^$"), value) is not None
    assert _accepts(lambda v: check_literal(v, "batch id"), value) == expected


@pytest.mark.parametrize("value", PROBES)
def test_identifiers_follow_the_shared_pattern(value):
    expected = re.fullmatch(CONTRACT["identifier_pattern"].strip("^$"), value) is not None
    assert _accepts(lambda v: check_identifier(v, "catalog"), value) == expected


ALIAS_PROBES = ["champion", "challenger", "my-alias", "_x", "v1a", "latest", "v1", "v42", "1x",
                "a b", "a.b", "a\n", "", "a" * 255, "a" * 256]


@pytest.mark.parametrize("value", ALIAS_PROBES)
def test_aliases_follow_the_shared_rule(value):
    expected = (re.fullmatch(CONTRACT["alias_pattern"].strip("^$"), value) is not None
                and value not in CONTRACT["reserved_aliases"]
                and re.fullmatch(CONTRACT["reserved_alias_pattern"].strip("^$"), value) is None)
    try:
        check_alias(value)
        accepted = True
    except InvalidValueError:
        accepted = False
    assert accepted == expected


def test_run_end_states_are_the_jobs_clients():
    assert tuple(CONTRACT["run_end_states"]) == END_STATES
    assert CONTRACT["run_success_state"] == SUCCESS_STATE

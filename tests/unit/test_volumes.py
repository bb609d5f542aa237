"""Volume paths: which ones name a file or folder of a volume, and where each lives (issue 17).

No server here: :mod:`yws.storage.volumes` checks and maps a path, :mod:`yws.server.grants`
decides who holds a privilege on a volume, and the Files API routes' request helpers
(ranges, page tokens, flags) are pure functions of :mod:`yws.server.files_routes`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from yws.config import Settings
from yws.contract.sqlfiles import Grant
from yws.platform import PLATFORMS, DatabricksTarget, LocalTarget
from yws.server import files_routes
from yws.server.errors import ApiError
from yws.server.grants import holds
from yws.storage.volumes import VolumePath, VolumePathError, local_path, parse, volumes_root


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "yws")


# -- parsing -----------------------------------------------------------------------------------
def test_a_volume_path_splits_into_the_volume_and_the_names_inside_it():
    where = parse("/Volumes/yws_dev/ml/r_models/glm/v1.json")
    assert where == VolumePath("yws_dev", "ml", "r_models", ("glm", "v1.json"))
    assert where.volume_name == "yws_dev.ml.r_models"
    assert where.path == "/Volumes/yws_dev/ml/r_models/glm/v1.json"
    assert where.name == "v1.json"
    assert parse("/Volumes/yws_dev/ml/r_models") == VolumePath("yws_dev", "ml", "r_models")
    # a directory may end with one slash; catalog, schema and volume are case-insensitive
    assert parse("/Volumes/YWS_DEV/ml/R_Models/glm/") == VolumePath(
        "yws_dev", "ml", "r_models", ("glm",))
    assert parse("/Volumes/c/s/v/Model v2 (final).json").parts == ("Model v2 (final).json",)


@pytest.mark.parametrize(("path", "says"), [
    ("", "a volume path is required"),
    ("/tmp/x", "is not a Unity Catalog volume path"),
    ("Volumes/c/s/v/x", "is not a Unity Catalog volume path"),
    ("//Volumes/c/s/v/x", "is not a Unity Catalog volume path"),
    ("/volumes/c/s/v/x", "is not a Unity Catalog volume path"),
    ("/Volumes/c/s", "names no volume"),
    ("/Volumes/c/s/", "empty, '.' and '..' names are not allowed"),
    ("/Volumes/c/s/v/../w/x", "'..' names are not allowed"),
    ("/Volumes/c/s/v/a/../../../../etc/passwd", "'..' names are not allowed"),
    ("/Volumes/c/s/v/./x", "'.' and '..' names are not allowed"),
    ("/Volumes/c/s/v/a//b", "empty, '.' and '..' names"),
    ("/Volumes/c/s/v/a//", "empty, '.' and '..' names"),
    ("/Volumes/c/../v/x", "'..' names are not allowed"),
    ("/Volumes/c/s/v/a\x00b", "control characters"),
    ("/Volumes/c/s/v/a\nb", "control characters"),
    ("/Volumes/c/s/v/a\\..\\b", "'\\' and '%' are not allowed"),
    ("/Volumes/c/s/v/%2e%2e/x", "'\\' and '%' are not allowed"),
    ("/Volumes/c/s/v/%2fetc", "'\\' and '%' are not allowed"),
    ("/Volumes/c-x/s/v/x", "not a valid identifier"),
    ("/Volumes/c/s/v/" + "x" * 256, "longer than 255 bytes"),
    ("/Volumes/c/s/v/" + "a/" * 2100, "longer than 4096 bytes"),
])
def test_anything_that_could_leave_its_volume_is_refused(path, says):
    with pytest.raises(VolumePathError, match=says.replace("(", r"\(").replace("\\", "\\\\")):
        parse(path)


def test_a_refusal_is_a_yws_error_and_a_value_error():
    from yws.errors import YwsError

    with pytest.raises(VolumePathError) as e:
        parse("/Volumes/c/s/v/..")
    assert isinstance(e.value, YwsError) and isinstance(e.value, ValueError)


# -- mapping -----------------------------------------------------------------------------------
def test_locally_a_volume_file_lives_under_yws_home_volumes(settings):
    place = local_path(settings, "/Volumes/yws_dev/ml/r_models/glm/v1.json")
    assert place == settings.home.resolve() / "volumes/yws_dev/ml/r_models/glm/v1.json"
    assert volumes_root(settings) == settings.home.resolve() / "volumes"
    assert local_path(settings, "/Volumes/yws_dev/ml/r_models") == \
        settings.home.resolve() / "volumes/yws_dev/ml/r_models"


def test_a_mounted_volume_path_is_used_as_it_is_once_checked(settings):
    assert local_path(settings, "/Volumes/yws_dev/ml/r_models/a.json", mounted=True) == \
        Path("/Volumes/yws_dev/ml/r_models/a.json")
    with pytest.raises(VolumePathError):
        local_path(settings, "/Volumes/yws_dev/ml/r_models/../x", mounted=True)


def test_a_symbolic_link_out_of_the_volume_is_refused(settings, tmp_path):
    volume = settings.home.resolve() / "volumes/yws_dev/ml/r_models"
    volume.mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", volume / "out")
    with pytest.raises(VolumePathError, match="leads outside volume yws_dev.ml.r_models"):
        local_path(settings, "/Volumes/yws_dev/ml/r_models/out/key.pem")
    os.symlink(volume / "in", volume / "alias")  # a link that stays inside is fine
    assert local_path(settings, "/Volumes/yws_dev/ml/r_models/alias/a") == volume / "alias/a"


def test_the_platform_decides_where_a_volume_path_is_read(settings):
    path = "/Volumes/yws_dev/ml/r_models/glm/v1.json"
    assert LocalTarget(settings).volume_path(path) == local_path(settings, path)
    assert DatabricksTarget(settings).volume_path(path) == Path(path)
    assert {name: cls.volumes_mounted for name, cls in PLATFORMS.items()} == {
        "local": False, "databricks": True}


# -- grants ------------------------------------------------------------------------------------
GRANTS = [
    Grant("yws_r_users", "USE CATALOG", "CATALOG", "yws_dev"),
    Grant("yws_r_users", "USE SCHEMA", "SCHEMA", "yws_dev.ml"),
    Grant("yws_r_users", "READ VOLUME", "VOLUME", "yws_dev.ml.r_models"),
    Grant("yws_r_users", "WRITE VOLUME", "VOLUME", "yws_dev.ml.r_models"),
    Grant("yws_jobs", "READ VOLUME", "VOLUME", "yws_dev.ml.r_models"),
    Grant("admins", "ALL PRIVILEGES", "CATALOG", "yws_dev"),
    Grant("stewards", "READ VOLUME", "SCHEMA", "yws_dev.ml"),
]


@pytest.mark.parametrize(("who", "privilege", "securable", "held"), [
    ({"rita", "yws_r_users"}, "READ VOLUME", "yws_dev.ml.r_models", True),
    ({"rita", "yws_r_users"}, "WRITE VOLUME", "yws_dev.ml.r_models", True),
    ({"rita", "yws_r_users"}, "READ VOLUME", "yws_dev.ml.mlflow_tmp", False),
    ({"rita", "yws_r_users"}, "USE SCHEMA", "yws_dev.ml", True),
    ({"yws_jobs"}, "READ VOLUME", "yws_dev.ml.r_models", True),
    ({"yws_jobs"}, "WRITE VOLUME", "yws_dev.ml.r_models", False),
    ({"ana"}, "READ VOLUME", "yws_dev.ml.r_models", False),
    # inherited from the catalog or the schema; ALL PRIVILEGES holds every privilege
    ({"boss", "admins"}, "WRITE VOLUME", "yws_dev.ml.r_models", True),
    ({"boss", "admins"}, "USE SCHEMA", "yws_dev.ml", True),
    ({"sam", "stewards"}, "READ VOLUME", "yws_dev.ml.r_models", True),
    ({"sam", "stewards"}, "READ VOLUME", "yws_dev.other.r_models", False),
    ({"sam", "stewards"}, "WRITE VOLUME", "yws_dev.ml.r_models", False),
    # names compare case-insensitively
    ({"rita", "yws_r_users"}, "read volume", "YWS_DEV.ML.R_MODELS", True),
])
def test_privileges_are_held_on_the_volume_or_inherited(who, privilege, securable, held):
    assert holds(GRANTS, who, privilege, securable) is held


# -- request helpers of the routes -------------------------------------------------------------
@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 10, None),
    ("bytes=0-4", 10, (0, 4)),
    ("bytes=5-", 10, (5, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-30", 10, (0, 9)),
    ("bytes=8-100", 10, (8, 9)),
    ("bytes=4-2", 10, None),  # invalid: ignored, the whole file
    ("bytes=0-1,4-5", 10, None),  # several ranges: ignored, the whole file
    ("items=0-1", 10, None),
    ("bytes=-", 10, None),
])
def test_a_single_byte_range_is_honoured(header, size, expected):
    assert files_routes.byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10),
                                              ("bytes=0-", 0)])
def test_a_range_outside_the_file_is_416_with_its_size(header, size):
    with pytest.raises(ApiError) as e:
        files_routes.byte_range(header, size)
    assert e.value.status == 416 and e.value.headers == {"Content-Range": f"bytes */{size}"}


def test_page_tokens_round_trip_and_refuse_what_is_not_ours():
    where = parse("/Volumes/c/s/v/d")
    token = files_routes.page_token("b 2.json")
    assert "/" not in token and "b 2" not in token
    assert files_routes.after_token(token, where) == "b 2.json"
    assert files_routes.after_token(None, where) is None
    assert files_routes.after_token("", where) is None  # an empty token is no token
    for bad in ("!!!", "*", "-_-_", files_routes.page_token("a/b")):
        with pytest.raises(ApiError, match="page_token is not a next_page_token"):
            files_routes.after_token(bad, where)


@pytest.mark.parametrize(("value", "expected"), [(None, 1000), ("0", 1000), ("5", 5),
                                                 ("5000", 1000)])
def test_page_size_defaults_and_is_coerced_to_1000(value, expected):
    assert files_routes.page_size(value) == expected


def test_bad_page_sizes_and_flags_are_400s_that_name_the_parameter():
    for call, says in ((lambda: files_routes.page_size("-1"), "page_size"),
                       (lambda: files_routes.page_size("ten"), "page_size"),
                       (lambda: files_routes.flag("yes", "overwrite", True), "overwrite")):
        with pytest.raises(ApiError, match=says) as e:
            call()
        assert (e.value.status, e.value.code) == (400, "BAD_REQUEST")
    assert files_routes.flag(None, "overwrite", True) is True
    assert files_routes.flag("FALSE", "overwrite", True) is False

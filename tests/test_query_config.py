"""Saved views in the config: checked when the config loads, each error naming its key."""

from __future__ import annotations

import pytest

from assetfs.config import parse_config
from assetfs.errors import ConfigError

APPLE = {"provider": "apple", "base_url": "http://x", "client_id": "c", "client_secret": "s"}


def config(**views):
    return parse_config({"accounts": {"brand": {**APPLE, "views": views}}}, "config.toml")


def test_views_load():
    loaded = config(covers="brandAssetDetails.intent==COVER_PHOTO", recent="updatedDate=ge=-7d;state!=DELETED")
    assert loaded.accounts["brand"].views == {
        "covers": "brandAssetDetails.intent==COVER_PHOTO",
        "recent": "updatedDate=ge=-7d;state!=DELETED",
    }
    assert parse_config({"accounts": {"brand": APPLE}}).accounts["brand"].views == {}


@pytest.mark.parametrize(
    "views, message",
    [
        (
            {"covers": "brandAssetDetails.intent=COVER_PHOTO"},
            r"accounts\.brand\.views\.covers: .*unknown operator = at character 25",
        ),
        ({"covers": ""}, r"accounts\.brand\.views\.covers: .*empty expression"),
        ({"old": "a==1;;b==2"}, r"accounts\.brand\.views\.old: .*empty clause at character 6"),
        ({"a/b": "state==PUBLISHED"}, r"accounts\.brand\.views\.a/b.*cannot be a directory name"),
        ({" ": "state==PUBLISHED"}, "cannot be a directory name"),
    ],
)
def test_a_bad_view_is_a_config_error_naming_its_key(views, message):
    with pytest.raises(ConfigError, match=message):
        config(**views)


def test_views_must_be_text():
    with pytest.raises(ConfigError, match=r"accounts\.brand\.views\.covers"):
        config(covers=3)

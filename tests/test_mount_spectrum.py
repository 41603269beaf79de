"""The read path on a real mount of the emulated Spectrum API: tree (assets as files, their
production outputs under .assets/), bytes, tools, organizations named in the config."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from truth import download, md5, spectrum_assets

from assetfs.fuse_ops import UNSIZED_PER_READDIR

pytestmark = pytest.mark.mount
SEED_ORG = "7000000000000300322"


def run(*args: str, **kwargs) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout


@pytest.fixture
def spectrum(emu, mount):
    m = mount(emu.config, accounts=["carhartt"])
    return m, m.path / "carhartt", emu.account("spectrum")


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.assetfs.{name}").decode()


def test_tree_shows_the_seed_assets_with_their_production_outputs(spectrum):
    m, root, account = spectrum
    org = root / SEED_ORG
    names = sorted(os.listdir(org))
    files = sorted(
        a["userFacingFileName"] + os.path.splitext(a["uploadedAssetUri"].split("?")[0])[1]
        for a in spectrum_assets(account, SEED_ORG)
    )
    assert names == sorted(files + [".assets"])
    assert sorted(os.listdir(org / ".assets")) == files
    used = org / ".assets" / "white mba used.png"
    assert sorted(os.listdir(used)) == ["asset.json", "production", "thumbnail.png"]
    outputs = sorted(os.listdir(used / "production" / "CCG60521324002"))
    assert outputs == ["CCG60521324002R1.DST", "CCG60521324002R1.PDF", "CCG60521324002R1.PNG"]
    assert xattr(used, "id") == xattr(org / "white mba used.png", "id") == "1234"


def test_every_content_file_has_the_providers_bytes_and_real_size(spectrum):
    m, root, account = spectrum
    for org in account["organizations"]:
        by_id = {str(a["id"]): a for a in spectrum_assets(account, org)}
        contents = [p for p in (root / org).iterdir() if p.name != ".assets"]
        assert contents, f"organization {org} lists no file"
        for content in contents:
            asset = by_id[xattr(content, "id")]
            asset_dir = root / org / ".assets" / content.name
            expected = download(asset["uploadedAssetUri"])
            assert content.stat().st_size == len(expected)
            assert md5(content.read_bytes()) == md5(expected)
            for job in asset.get("productionJobs") or []:
                for output in job["result"]["outputs"]:
                    name = output["uri"].split("?")[0].rsplit("/", 1)[-1]
                    local = asset_dir / "production" / job["reference"] / name
                    assert local.read_bytes() == download(output["uri"])


def test_asset_json_is_the_providers_metadata(spectrum):
    import json

    m, root, account = spectrum
    by_id = {str(a["id"]): a for a in spectrum_assets(account, SEED_ORG)}
    asset_dirs = list((root / SEED_ORG / ".assets").iterdir())
    assert len(asset_dirs) == len(by_id)
    for asset_dir in asset_dirs:
        assert json.loads((asset_dir / "asset.json").read_text()) == by_id[xattr(asset_dir, "id")]


def test_ls_find_du_cp_getfattr(spectrum, tmp_path):
    m, root, account = spectrum
    listing = run("ls", "-laR", str(root))
    assert "CCG60521324001R1.DST" in listing and "white MBA.png" in listing
    found = run("find", str(root / SEED_ORG), "-name", "*.DST").splitlines()
    assert sorted(f.rsplit("/", 1)[1] for f in found) == ["CCG60521324001R1.DST", "CCG60521324002R1.DST"]
    du = int(run("du", "-sk", "--apparent-size", str(root / SEED_ORG)).split()[0])
    assert du > 0
    copy = tmp_path / "copy"
    run("cp", "-r", str(root / SEED_ORG), str(copy))
    assert run("diff", "-r", str(root / SEED_ORG), str(copy)) == ""
    attrs = run("getfattr", "-d", str(root / SEED_ORG / "white mba used.png"))
    assert 'user.assetfs.id="1234"' in attrs and 'user.assetfs.reference="CCG60521324002"' in attrs


def test_an_organization_not_in_the_config_resolves_when_named(emu, mount):
    account = emu.account("spectrum")
    config = {"accounts": {"carhartt": {**account, "organizations": [SEED_ORG]}}}
    m = mount(config)
    assert os.listdir(m.path / "carhartt") == [SEED_ORG]
    other = account["organizations"][1]
    assert len(os.listdir(m.path / "carhartt" / other)) > 1
    with pytest.raises(FileNotFoundError):
        os.listdir(m.path / "carhartt" / "123456789")


def test_organizations_named_in_the_config(emu, mount):
    account = emu.account("spectrum")
    first, second = account["organizations"][:2]
    m = mount({"accounts": {"carhartt": {**account, "organizations": {"Main store": first, "Outlet": second}}}})
    root = m.path / "carhartt"
    assert sorted(os.listdir(root)) == ["Main store", "Outlet"]
    assert xattr(root / "Main store", "id") == first
    assert os.stat(root / first).st_ino == os.stat(root / "Main store").st_ino  # the ID still resolves
    assert "white mba used.png" in os.listdir(root / "Main store")


def test_spectrum_is_read_only(spectrum):
    import errno

    m, root, account = spectrum
    with pytest.raises(OSError) as e:
        (root / SEED_ORG / "new.png").write_bytes(b"x")
    assert e.value.errno in (errno.EROFS, errno.EACCES)


def test_ls_l_asks_a_directorys_sizes_ahead_each_once(fresh_emulator, mount):
    """Spectrum publishes no sizes: each file's takes a HEAD. A directory read and then
    stat'ed file by file (`ls -l`) has its sizes asked ahead, several at once, each once;
    a plain listing or a walk to one file asks none ahead."""
    emu = fresh_emulator("--assets", "300")
    account = emu.account("spectrum")
    org = account["organizations"][0]
    assets = spectrum_assets(account, org)
    m = mount(emu.config, accounts=["carhartt"])
    directory = m.path / "carhartt" / org

    def heads() -> int:
        return sum(n for k, n in emu.requests().items() if k.startswith("HEAD "))

    emu.reset_requests()
    assert len(os.listdir(directory)) == len(assets) + 1  # `ls -f`: names only
    assert heads() == 0
    one = next(n for n in os.listdir(directory) if n != ".assets")
    assert (directory / one).stat().st_size > 0  # a walk to one file: its own HEAD only
    assert heads() == 1

    listing = run("ls", "-l", "--time-style=+", str(directory)).splitlines()
    assert len(listing) == len(assets) + 1  # "total", then one line per file
    assert heads() == len(assets)  # every other file once, none twice
    counters = json.loads((m.path / ".assetfs" / "status.json").read_text())["counters"]
    assert counters["sizes_ahead"] == len(assets) - 2  # all but the walk's and the first stat's
    # The readdirs after the batch began carried the sizes: a getattr only for the files of the first.
    assert counters["fuse_getattr"] <= UNSIZED_PER_READDIR + 8 < len(assets)
    sizes = {line.split(maxsplit=5)[5]: int(line.split()[4]) for line in listing[1:]}
    by_name = {a["userFacingFileName"] + os.path.splitext(a["uploadedAssetUri"].split("?")[0])[1]: a for a in assets}
    for name in sorted(by_name)[:: len(by_name) // 5]:
        assert sizes[name] == len(download(by_name[name]["uploadedAssetUri"]))
    before = emu.requests()
    run("ls", "-l", str(directory))
    assert emu.requests() == before  # sizes are known for good

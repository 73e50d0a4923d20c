"""The crank wheel `crank build` puts into the image: packed from an installed wheel, or
built from a source checkout."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from crank.errors import GenerateError
from crank.generate.wheel import build_source_wheel, crank_source_dir, pack_installed_wheel

from .conftest import overlay_venv


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def fake_installation(site: Path, *, module: str = "VALUE = 1\n") -> metadata.Distribution:
    """A distribution installed the way pip leaves one: files, dist-info, RECORD."""
    files = {
        "demo_pkg/__init__.py": module.encode(),
        "demo_pkg/data/table.txt": b"a,b\n",
        "demo_dist-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: demo-dist\nVersion: 1.0\n"
        ),
        "demo_dist-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nTag: py3-none-any\n",
        "demo_dist-1.0.dist-info/INSTALLER": b"pip\n",
        "demo_dist-1.0.dist-info/direct_url.json": b'{"url": "file:///x.whl", "archive_info": {}}',
    }
    record = [f"{name},{_hash(data)},{len(data)}" for name, data in files.items()]
    record += [
        "../../../bin/demo,sha256=abc,10",  # a console script pip wrote: not in a wheel
        "demo_pkg/__pycache__/__init__.cpython-311.pyc,,",
        "demo_dist-1.0.dist-info/RECORD,,",
    ]
    for name, data in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    (site / "demo_dist-1.0.dist-info" / "RECORD").write_text("\n".join(record) + "\n")
    # the module's bytecode exists on disk but is never packed (not listed with a hash)
    (site / "demo_pkg" / "__pycache__").mkdir()
    (site / "demo_pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    return metadata.PathDistribution(site / "demo_dist-1.0.dist-info")


def test_packed_wheel_holds_the_installed_files_and_a_fresh_record(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = fake_installation(site)
    wheel = pack_installed_wheel(tmp_path / "out", dist)
    assert wheel.name == "demo_dist-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert names == [
            "demo_dist-1.0.dist-info/METADATA",
            "demo_dist-1.0.dist-info/WHEEL",
            "demo_pkg/__init__.py",
            "demo_pkg/data/table.txt",
            "demo_dist-1.0.dist-info/RECORD",
        ]
        assert archive.read("demo_pkg/__init__.py") == b"VALUE = 1\n"
        record = archive.read("demo_dist-1.0.dist-info/RECORD").decode().splitlines()
    metadata_bytes = (site / names[0]).read_bytes()
    assert record[0] == f"{names[0]},{_hash(metadata_bytes)},{len(metadata_bytes)}"
    assert record[-1] == "demo_dist-1.0.dist-info/RECORD,,"


def test_packing_is_deterministic(tmp_path: Path) -> None:
    dist = fake_installation(tmp_path / "site")
    first = pack_installed_wheel(tmp_path / "one", dist).read_bytes()
    second = pack_installed_wheel(tmp_path / "two", dist).read_bytes()
    assert first == second


def test_an_installation_edited_in_place_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = fake_installation(site)
    (site / "demo_pkg" / "__init__.py").write_text("VALUE = 2  # patched\n")
    with pytest.raises(GenerateError, match=r"changed after installation: .*__init__\.py") as info:
        pack_installed_wheel(tmp_path / "out", dist)
    assert info.value.hint is not None
    assert "--force-reinstall crank-workers" in info.value.hint
    assert not (tmp_path / "out" / "demo_dist-1.0-py3-none-any.whl").exists()


def test_a_missing_installed_file_is_named(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = fake_installation(site)
    (site / "demo_pkg" / "data" / "table.txt").unlink()
    with pytest.raises(GenerateError, match=r"lacks demo_pkg/data/table\.txt"):
        pack_installed_wheel(tmp_path / "out", dist)


@pytest.mark.slow
def test_crank_installed_from_a_wheel_packs_the_same_wheel(tmp_path: Path) -> None:
    """The real thing: crank installed from its wheel (not a checkout) rebuilds that wheel."""
    source = crank_source_dir()
    assert source is not None, "the tests run from a crank source checkout"
    original = build_source_wheel(source, tmp_path / "dist")
    python = overlay_venv(tmp_path / "venv")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(original)],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "packed"
    proc = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, crank; from pathlib import Path; "
            "from crank.generate.wheel import build_crank_wheel; "
            "print(crank.__file__); print(build_crank_wheel(Path(sys.argv[1])))",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    crank_file, packed = proc.stdout.split()
    assert Path(crank_file).is_relative_to(tmp_path / "venv")  # the installed copy ran
    with zipfile.ZipFile(original) as a, zipfile.ZipFile(packed) as b:
        want = {n: a.read(n) for n in a.namelist() if not n.endswith("/RECORD")}
        got = {n: b.read(n) for n in b.namelist() if not n.endswith("/RECORD")}
    assert Path(packed).name == original.name
    assert got == want


@pytest.mark.slow
def test_crank_wheel_ships_the_templates(tmp_path: Path) -> None:
    source = crank_source_dir()
    assert source is not None
    wheel = build_source_wheel(source, tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "crank/_templates/worker/cookiecutter.json" in names
    assert "crank/_templates/artifacts/Dockerfile.j2" in names
    assert "crank/_templates/artifacts/VERSION" in names
    assert "crank/_templates/worker-migration-checklist.yml" in names

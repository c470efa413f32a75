""".ci/lab (./dev lab) decides where the device suite runs and when the lab is rebuilt: checked
here against stand-in lab sources whose build.sh and run-in-guest.sh only record what they were
asked to do."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import netmap_core

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_SCRIPT = os.path.join(REPO, ".ci", "lab")

pytestmark = [
    pytest.mark.skipif(netmap_core.probe("netmap")[0], reason="/dev/netmap works here: .ci/lab "
                       "would run the real device suite"),
    pytest.mark.skipif(os.geteuid() != 0, reason=".ci/lab builds a lab only as root"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git (git archive, get-tar-commit-id)"),
]

FAKE_BUILD = r"""#!/bin/bash
# stand-in for the lab's build.sh: the files .ci/lab looks at, and a runner that records CMD
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
[ -z "${FAIL_BUILD:-}" ] || { echo "apt-get: no network"; exit 3; }
echo "=== fake build"
echo "compiler noise"
mkdir -p "$NETMAP_LAB"
cp "$HERE/run-in-guest.sh" "$NETMAP_LAB/run-in-guest.sh"
touch "$NETMAP_LAB/vmlinux" "$NETMAP_LAB/initramfs.cpio.gz"
echo "netmap_commit=$(gzip -dc "$HERE"/netmap-*.tar.gz | git get-tar-commit-id)" >"$NETMAP_LAB/VERSIONS"
echo "verify=$NETMAP_LAB_VERIFY" >>"$NETMAP_LAB/builds"
"""

FAKE_RUNNER = r"""#!/bin/bash
printf '%s' "$*" >"$NETMAP_LAB/cmd"
echo "timeout=$NETMAP_LAB_TIMEOUT append=$NETMAP_LAB_APPEND"
exit "${FAKE_RC:-0}"
"""


@pytest.fixture
def sources(tmp_path):
    """Lab sources: the stand-ins, an init.sh and a netmap tarball made by git archive."""
    src = tmp_path / "shared" / "lab"
    src.mkdir(parents=True)
    (src / "build.sh").write_text(FAKE_BUILD)
    (src / "run-in-guest.sh").write_text(FAKE_RUNNER)
    (src / "init.sh").write_text("#!/bin/sh\n")
    for f in ("build.sh", "run-in-guest.sh"):
        (src / f).chmod(0o755)
    git = tmp_path / "netmap-git"
    git.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", "init", "-q", str(git)], check=True, env=env)
    (git / "README").write_text("netmap\n")
    subprocess.run(["git", "-C", str(git), "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", str(git), "commit", "-qm", "c"], check=True, env=env)
    subprocess.run(["git", "-C", str(git), "archive", "--format=tar.gz", "--prefix=netmap-x/",
                    "-o", str(src / "netmap-x.tar.gz"), "HEAD"], check=True, env=env)
    return src


def lab(src, lab_dir, *args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("NETMAP_LAB")}
    full.update(NETMAP_LAB_SRC=str(src), NETMAP_LAB=str(lab_dir), PYNETMAP_VENV=sys.prefix, **env)
    return subprocess.run(["bash", LAB_SCRIPT, *args], check=False, env=full, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_builds_a_missing_lab_once_then_runs_the_suite_in_it(sources, tmp_path):
    lab_dir = tmp_path / "lab"
    first = lab(sources, lab_dir, "-k", "live checks")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "building" in first.stdout and "not built" in first.stdout
    assert "=== fake build" in first.stdout and "compiler noise" not in first.stdout
    assert (lab_dir / "builds").read_text() == "verify=0\n", "built once, without verify.sh"
    assert (lab_dir / "sources.sha256").read_text().count("\n") == 4
    assert "timeout=3600 append=log_buf_len=32M" in first.stdout, "room for the suite's kernel log"
    cmd = (lab_dir / "cmd").read_text()
    assert f"cd {REPO}" in cmd and "PYNETMAP_BACKEND=netmap" in cmd
    assert "-m pytest --backend=netmap --timeout=600 --conformance-examples=100 -k live\\ checks" in cmd
    assert "tests/kernel_log.py; exit $rc" in cmd, "the netmap kernel log lines, for the record"
    again = lab(sources, lab_dir, NETMAP_LAB_TIMEOUT="99")
    assert again.returncode == 0 and "building" not in again.stdout and "timeout=99" in again.stdout
    assert (lab_dir / "builds").read_text() == "verify=0\n"


@pytest.mark.parametrize("change,reason", [
    ("init.sh", "its sources changed since it was built: init.sh"),
    ("VERSIONS", "built from netmap 0000, the sources hold"),
    ("stamp", "built without a record of its sources"),
    ("vmlinux", "incomplete (no"),
])
def test_stale_lab_is_rebuilt(sources, tmp_path, change, reason):
    lab_dir = tmp_path / "lab"
    assert lab(sources, lab_dir).returncode == 0
    if change == "init.sh":
        (sources / "init.sh").write_text("#!/bin/sh\necho changed\n")
    elif change == "VERSIONS":
        (lab_dir / "VERSIONS").write_text("netmap_commit=0000\n")
    elif change == "stamp":
        (lab_dir / "sources.sha256").unlink()
    else:
        (lab_dir / "vmlinux").unlink()
    out = lab(sources, lab_dir)
    assert out.returncode == 0 and reason in out.stdout, out.stdout + out.stderr
    assert (lab_dir / "builds").read_text().count("verify=") == 2


@pytest.mark.parametrize("rc,says", [
    (1, "pytest exit 1 in the guest"),
    (5, "no tests ran (pytest exit 5)"),
    (124, "TIMEOUT"),
    (125, "the guest crashed or did not boot"),
])
def test_guest_failures_fail_with_their_reason(sources, tmp_path, rc, says):
    out = lab(sources, tmp_path / "lab", FAKE_RC=str(rc))
    assert out.returncode == rc and says in out.stderr, out.stdout + out.stderr


def test_failed_build_fails_and_leaves_the_lab_stale(sources, tmp_path):
    lab_dir = tmp_path / "lab"
    out = lab(sources, lab_dir, FAIL_BUILD="1")
    assert out.returncode == 1 and "building the lab failed (exit 3" in out.stderr
    assert "apt-get: no network" in out.stderr and not (lab_dir / "sources.sha256").exists()


def test_without_lab_sources_it_says_why_and_succeeds(tmp_path):
    out = lab(tmp_path / "nowhere", tmp_path / "lab")
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith("device suite skipped: no usable /dev/netmap here (")
    assert out.stdout.count("\n") == 1 and not (tmp_path / "lab").exists()


def test_verify_on_request(sources, tmp_path):
    lab_dir = tmp_path / "lab"
    assert lab(sources, lab_dir, NETMAP_LAB_VERIFY="1").returncode == 0
    assert (lab_dir / "builds").read_text() == "verify=1\n"


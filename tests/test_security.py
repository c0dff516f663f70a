"""Job directories no one else can read or plant code in (issue 17), on every backend.

A second, unprivileged user (``slurmscope-intruder``, made here with ``useradd`` when it does
not exist, and removed again if this module made it) plants pickles whose ``__reduce__``
creates a marker file: in a world-writable root, in a loosened results directory, as a
``by-id`` link for a job id not used yet, in a job's payload and in an upstream result.
Nothing may unpickle them (the driver, ``attach``, every command, the worker): the marker
stays absent and each error names the path at fault. Job directories are private whatever
the umask, and group-readable, never group-writable, with ``share_with_group=True``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pickle
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyslurm_support
import pytest
import tasks
from conftest import BACKENDS, backend_cluster

import slurmscope
from slurmscope.errors import InvalidInputError, TaskFailedError, UnsafeJobDirectoryError

INTRUDER = "slurmscope-intruder"

identity = slurmscope.task(tasks.identity)
add = slurmscope.task(tasks.add)
gate = slurmscope.task(tasks.wait_for_file)


class _Marker:
    """Unpickling it creates ``path``: proof that a planted pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def evil(marker: Path) -> bytes:
    """An outcome pickle that looks like a success and creates ``marker`` when loaded."""
    return pickle.dumps({"ok": True, "value": _Marker(marker)}, protocol=5)


@pytest.fixture(scope="module")
def intruder() -> Iterator[pwd.struct_passwd]:
    """The second user: made with ``useradd`` if missing (then removed afterwards)."""
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the security tests need root to create a second user")
        pytest.skip("needs root to create a second user")
    created = False
    try:
        user = pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false"]
            + [INTRUDER],
            check=True,
            capture_output=True,
        )
        created = True
        user = pwd.getpwnam(INTRUDER)
    assert user.pw_uid != 0
    yield user
    if created:
        subprocess.run(["userdel", INTRUDER], check=False, capture_output=True)


def as_intruder(user: pwd.struct_passwd, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the intruder (the system Python: the test's venv may be out of
    its reach)."""
    return subprocess.run(
        ["/usr/bin/python3", "-I", "-c", code],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        umask=0o022,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plant(user: pwd.struct_passwd, code: str) -> None:
    proc = as_intruder(user, "import os\n" + code)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def wide_root() -> Iterator[Path]:
    """A world-writable root (mode 0777, not sticky), as a loose scratch directory is."""
    root = Path(tempfile.mkdtemp(prefix="slurmscope-security-", dir="/tmp"))
    root.chmod(0o777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where a planted pickle would leave its mark; checked to work first."""
    probe = tmp_path / "probe"
    pickle.loads(evil(probe))  # noqa: S301 - proves that the marker would appear
    assert probe.exists()
    return tmp_path / "marker"


make_cluster = backend_cluster  # a cluster of a kind, closed by the test's ExitStack


def run_cli(root: Path, *args: str, allow: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pyslurm_support.DOUBLE_DIR in sys.path:
        env["PYTHONPATH"] = pyslurm_support.DOUBLE_DIR
    return subprocess.run(
        [sys.executable, "-m", "slurmscope.cli", "--root", str(root)]
        + (["--allow-writable-root"] if allow else [])
        + list(args),
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def refused_by_cli(root: Path, path: Path, *args: str) -> None:
    proc = run_cli(root, *args)
    assert proc.returncode != 0, (args, proc.stdout)
    assert str(path) in proc.stderr and "refusing" in proc.stderr, (args, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_planted_job_directory_is_never_loaded(
    kind: str, wide_root: Path, marker: Path, intruder: pwd.struct_passwd
) -> None:
    with contextlib.ExitStack() as stack:
        with pytest.raises(InvalidInputError, match="writable by"):
            make_cluster(kind, wide_root, stack)
        c = make_cluster(kind, wide_root, stack, allow_writable_root=True)
        job = identity.on(c).map([1, 2])
        job.wait(timeout=180)
        d = job.directory
        manifest = (d / "manifest.json").read_bytes()
        refused = run_cli(wide_root, "status", job.job_id, allow=False)
        assert refused.returncode != 0 and "--allow-writable-root" in refused.stderr
        # The root is world-writable and not sticky: the intruder moves the job directory
        # aside and puts one of its own in its place.
        plant(
            intruder,
            f"d = {str(d)!r}\nos.rename(d, d + '.orig')\nos.makedirs(d + '/results')\n"
            f"open(d + '/manifest.json', 'wb').write(bytes.fromhex({manifest.hex()!r}))\n"
            f"for i in (0, 1): open(f'{{d}}/results/{{i}}.pkl', 'wb')"
            f".write(bytes.fromhex({evil(marker).hex()!r}))",
        )
        with pytest.raises(UnsafeJobDirectoryError) as error:
            job.get_results()
        assert str(d / "results" / "0.pkl") in str(error.value)
        assert INTRUDER in str(error.value) and "chmod -R go-w" in str(error.value)
        with pytest.raises(UnsafeJobDirectoryError, match=str(d / "results" / "1.pkl")):
            job[1].get_result()
        for asked in (job.job_id, d):
            with pytest.raises(UnsafeJobDirectoryError, match=str(d)):
                c.attach(asked)
        for args in (
            ["status", job.job_id],
            ["status", str(d)],
            ["explain", job.job_id],
            ["graph", "-f", "dot", job.job_id],
            ["logs", job.job_id],
            ["cancel", job.job_id],
            ["status"],
            ["clean", "--older-than", "0s"],
        ):
            refused_by_cli(wide_root, d, *args)
        assert (d / "results" / "0.pkl").exists()  # clean left it, and the marker is absent
        assert not marker.exists()


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_result_planted_in_a_loosened_directory_is_refused(
    kind: str, wide_root: Path, marker: Path, intruder: pwd.struct_passwd
) -> None:
    wide_root.chmod(0o755)
    root = wide_root / "jobs"
    with contextlib.ExitStack() as stack:
        c = make_cluster(kind, root, stack)
        job = add.on(c).map([1, 2])
        job.wait(timeout=180)
        results = job.directory / "results"
        planted = results / "1.pkl"
        # Loosened by hand (or made by an older version under umask 0): others can write in.
        for path in (root, job.directory, results):
            path.chmod(0o777 if path == results else 0o755)
        planted.unlink()
        plant(
            intruder, f"open({str(planted)!r}, 'wb').write(bytes.fromhex({evil(marker).hex()!r}))"
        )
        assert planted.stat().st_uid == intruder.pw_uid
        assert job[0].get_result() == 2
        with pytest.raises(UnsafeJobDirectoryError, match=str(planted)):
            job.get_results()
        refused_by_cli(root, results, "status", job.job_id)  # a new process: results/ is 0777
        refused_by_cli(root, results, "logs", job.job_id, "1")
    assert not marker.exists()


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_planted_by_id_link_is_refused(
    kind: str, wide_root: Path, tmp_path: Path, marker: Path, intruder: pwd.struct_passwd
) -> None:
    with contextlib.ExitStack() as stack:
        c = make_cluster(kind, wide_root, stack, allow_writable_root=True)
        job = identity.on(c)(1)
        job.wait(timeout=180)
        manifest = (job.directory / "manifest.json").read_text()
        future = str(int(job.job_id) + 1000)
        by_id = wide_root / "by-id"
        folder = by_id / c.name
        # 1. The intruder swaps the by-id tree for its own, with a link for a future id.
        evil_dir = wide_root / "planted"
        plant(
            intruder,
            f"r = {str(wide_root)!r}\nos.rename(r + '/by-id', r + '/by-id.moved')\n"
            f"os.makedirs({str(folder)!r})\nos.makedirs({str(evil_dir / 'results')!r})\n"
            f"open({str(evil_dir / 'manifest.json')!r}, 'w').write({manifest!r})\n"
            f"open({str(evil_dir / 'results' / '0.pkl')!r}, 'wb')"
            f".write(bytes.fromhex({evil(marker).hex()!r}))\n"
            f"os.symlink('../../planted', {str(folder / future)!r})",
        )
        with pytest.raises(UnsafeJobDirectoryError, match=str(by_id)):
            c.attach(future)
        refused_by_cli(wide_root, by_id, "status", future)
        refused_by_cli(wide_root, by_id, "logs", future)
        with pytest.raises(InvalidInputError, match="planted"):
            make_cluster(kind, wide_root, stack, allow_writable_root=True)
        # 2. A link of your own that leads out of the root is refused too.
        shutil.rmtree(by_id)
        (wide_root / "by-id.moved").rename(by_id)
        outside = tmp_path / "outside"
        (outside / "results").mkdir(parents=True, mode=0o700)
        outside.chmod(0o700)
        (outside / "manifest.json").write_text(manifest)
        (outside / "results" / "0.pkl").write_bytes(evil(marker))
        (folder / future).symlink_to(outside)
        with pytest.raises(UnsafeJobDirectoryError, match="outside the root"):
            c.attach(future)
        refused_by_cli(wide_root, folder / future, "status", future)
        assert c.attach(job.job_id).get_result() == 1  # the real link still works
        # 3. clean never follows a link out of the root (nor removes what it leads to).
        (wide_root / "elsewhere").symlink_to(outside)
        proc = run_cli(wide_root, "clean", "--older-than", "0s")
        assert proc.returncode == 1 and "elsewhere" in proc.stderr, proc.stderr
        assert "symbolic link" in proc.stderr and "removed 1 job directories" in proc.stdout
        assert not job.directory.exists()  # the real one, old enough, was removed
        assert (outside / "manifest.json").exists() and (outside / "results" / "0.pkl").exists()
    assert not marker.exists()


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_worker_refuses_a_planted_payload_and_upstream_result(
    kind: str, tmp_path: Path, marker: Path, intruder: pwd.struct_passwd
) -> None:
    with contextlib.ExitStack() as stack:
        c = make_cluster(kind, tmp_path / "jobs", stack)
        up = add.on(c)(1)
        up.wait(timeout=180)
        go = tmp_path / "go"
        opened = gate.on(c)(str(go))
        with c.dependencies(opened):
            victim = identity.on(c).map([1, 2])
            downstream = identity.on(c)(up)
        try:  # files someone else wrote: the payload of one, the upstream result of another
            for path in (victim.directory / "function.pkl", up.directory / "results" / "0.pkl"):
                path.write_bytes(evil(marker))
                os.chown(path, intruder.pw_uid, intruder.pw_gid)
        finally:
            go.touch()
        with pytest.raises(TaskFailedError) as error:
            victim.get_results(timeout=180)
        assert "UnsafeJobDirectoryError" in str(error.value)
        assert str(victim.directory / "function.pkl") in str(error.value)
        with pytest.raises(TaskFailedError) as error:
            downstream.get_result(timeout=180)
        assert str(up.directory / "results" / "0.pkl") in str(error.value)
        assert INTRUDER in str(error.value)
    assert not marker.exists()


def _modes(root: Path, skip: str = "") -> tuple[dict[Path, int], dict[Path, int]]:
    """The mode of every directory and file under ``root`` (links and ``skip`` left out)."""
    dirs: dict[Path, int] = {root: stat.S_IMODE(root.stat().st_mode)}
    files: dict[Path, int] = {}
    for folder, names, filenames in os.walk(root):
        if skip:
            names[:] = [n for n in names if n != skip]
        for name in names + filenames:
            path = Path(folder) / name
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                dirs[path] = stat.S_IMODE(st.st_mode)
            elif stat.S_ISREG(st.st_mode):
                files[path] = stat.S_IMODE(st.st_mode)
    return dirs, files


@pytest.mark.parametrize("umask", [0o000, 0o022])
@pytest.mark.parametrize("kind", BACKENDS)
def test_job_directories_are_private_whatever_the_umask(
    kind: str, umask: int, intruder: pwd.struct_passwd
) -> None:
    base = Path(tempfile.mkdtemp(prefix="slurmscope-private-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "jobs"
    old = os.umask(umask)
    try:
        with contextlib.ExitStack() as stack:
            c = make_cluster(kind, root, stack)
            job = add.on(c).map([1, 2])
            assert job.get_results(timeout=180) == [2, 3]
        dirs, files = _modes(root)
        kinds = {p.parent.name for p in files}
        assert {"results", "logs"} <= kinds and any(p.name == "function.pkl" for p in files)
        assert {p: m for p, m in dirs.items() if m != 0o700} == {}
        assert {p: m for p, m in files.items() if m != 0o600} == {}
        result = job.directory / "results" / "0.pkl"
        proc = as_intruder(intruder, f"open({str(result)!r}, 'rb').read()")
        assert proc.returncode != 0 and "PermissionError" in proc.stderr, proc.stderr
    finally:
        os.umask(old)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_group_option_gives_group_read_never_group_write(
    kind: str, intruder: pwd.struct_passwd
) -> None:
    # A team's project directory: group-writable, set-group-ID, the intruder's group.
    root = Path(tempfile.mkdtemp(prefix="slurmscope-group-", dir="/tmp"))
    os.chown(root, 0, intruder.pw_gid)
    root.chmod(0o2770)
    try:
        with contextlib.ExitStack() as stack:
            with pytest.raises(InvalidInputError, match="share_with_group=True"):
                make_cluster(kind, root, stack)
            c = make_cluster(kind, root, stack, share_with_group=True)
            job = add.on(c).map([1, 2])
            assert job.get_results(timeout=180) == [2, 3]
        dirs, files = _modes(root, skip=".local")  # the local scheduler's own state: private
        del dirs[root]
        assert files and {p.parent.name for p in files} >= {"results", "logs"}
        assert {p: m for p, m in dirs.items() if m & 0o777 != 0o750} == {}
        assert {p: m for p, m in files.items() if m != 0o640} == {}
        group = grp.getgrgid(intruder.pw_gid).gr_name
        assert all(p.stat().st_gid == intruder.pw_gid for p in files), group
        result = job.directory / "results" / "0.pkl"
        read = as_intruder(intruder, f"print(open({str(result)!r}, 'rb').read().hex())")
        assert read.returncode == 0 and bytes.fromhex(read.stdout.strip()) == result.read_bytes()
        for code in (
            f"open({str(result)!r}, 'ab')",
            f"open({str(result.parent / 'x.pkl')!r}, 'wb')",
            f"open({str(job.directory / 'function.pkl')!r}, 'wb')",
        ):
            proc = as_intruder(intruder, code)
            assert proc.returncode != 0 and "PermissionError" in proc.stderr, (code, proc.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_planted_checkpoint_is_never_loaded(
    tmp_path: Path, marker: Path, intruder: pwd.struct_passwd
) -> None:
    """A checkpoint is a pickle the worker loads in the next run: checked like the rest."""
    with contextlib.ExitStack() as stack:
        c = make_cluster("local", tmp_path / "jobs", stack)
        go = tmp_path / "go"
        opened = gate.on(c)(str(go))
        with c.dependencies(opened):
            victim = slurmscope.task(tasks.load_the_checkpoint).on(c)()
        try:
            folder = victim.directory / "checkpoints"
            folder.mkdir(mode=0o700)
            planted = folder / "0.pkl"
            planted.write_bytes(pickle.dumps(_Marker(marker), protocol=5))
            os.chown(planted, intruder.pw_uid, intruder.pw_gid)
        finally:
            go.touch()
        with pytest.raises(TaskFailedError) as error:
            victim.get_result(timeout=60)
        assert "UnsafeJobDirectoryError" in str(error.value) and str(planted) in str(error.value)
        assert INTRUDER in str(error.value)
    assert not marker.exists()


def test_a_private_groups_write_bit_is_no_one_elses(tmp_path: Path) -> None:
    """Under umask 002 (Debian's and Red Hat's, with a group of one's own per user), an older
    slurmscope made group-writable job directories; the group is the user's alone, so they
    still load. Writable by a group with other members, they do not."""
    from slurmscope.payload_guard import private_group

    if not private_group(os.getegid()):
        pytest.skip("this user's primary group has other members: no private group here")
    with contextlib.ExitStack() as stack:
        c = make_cluster("local", tmp_path / "jobs", stack)
        array = identity.on(c).map([1, 2])
        assert array.get_results(timeout=60) == [1, 2]
        for path in [array.directory, *array.directory.rglob("*")]:
            path.chmod(0o775 if path.is_dir() else 0o664)
    again = slurmscope.Cluster("local", root=tmp_path / "jobs", set_as_default=False)
    try:
        assert again.attach(array.job_id).get_results(timeout=60) == [1, 2]
        (array.directory / "results" / "0.pkl").chmod(0o666)
        with pytest.raises(UnsafeJobDirectoryError, match="writable by anyone"):
            again.attach(array.job_id).get_results(timeout=60)
    finally:
        again.close()

"""The job-directory root: made (private) and checked writable, refused where others could
write into it (unless opted in) and where the cluster's nodes could not see it (a local
filesystem when the nodes are other machines)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

from .errors import InvalidInputError
from .job_directory import BY_ID
from .payload_guard import dir_mode, make_dir, others_write, owner_name, problem, trusted_owners


def given_root(root: str | os.PathLike[str] | None) -> Path:
    """The root asked for: ``root``, else ``$SLURMSCOPE_ROOT``, else ``~/.slurmscope/jobs``
    (``~`` expanded; a relative root stays relative, as the command line shows it)."""
    chosen = root or os.environ.get("SLURMSCOPE_ROOT") or Path.home() / ".slurmscope" / "jobs"
    return Path(chosen).expanduser()


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The root a ``Cluster`` uses: :func:`given_root`, made absolute."""
    return given_root(root).absolute()


def make_root(root: Path, share_with_group: bool = False) -> None:
    """Create ``root`` and its missing parents (private, or group-readable, whatever the
    umask) and check that it can be written, with errors that say what to do."""
    missing = [p for p in (root, *root.parents) if not p.is_dir()]
    try:
        for path in reversed(missing):  # those slurmscope makes: private too
            with contextlib.suppress(FileExistsError):  # another process made it first
                make_dir(str(path), dir_mode(share_with_group))
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is a file, not a directory")
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create the job directory root {root}: {exc}. Pass "
            "Cluster(root=...) or set SLURMSCOPE_ROOT to a writable directory."
        ) from exc
    if not os.access(root, os.W_OK):
        raise InvalidInputError(
            f"the job directory root {root} is not writable. Pass Cluster(root=...) "
            "or set SLURMSCOPE_ROOT to a writable directory."
        )


def check_writers(root: Path, cluster_name: str, share_with_group: bool, allow: bool) -> None:
    """Refuse a root that others can write into (another owner, ``o+w``, or ``g+w``
    without ``share_with_group``; a sticky root such as ``/tmp`` protects each entry from
    everyone but its owner) unless ``allow`` (``allow_writable_root=True``), and refuse
    ``by-id`` folders someone else could have planted links in."""
    st = root.stat()
    others = "" if share_with_group else "its group or "
    bits = stat.S_IWOTH | (0 if share_with_group else stat.S_IWGRP)
    if st.st_uid not in trusted_owners():
        why = f"owned by {owner_name(st.st_uid)}, not by you or root"
    elif st.st_mode & bits & (others_write(st) | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        why = f"writable by {others}other users (mode {st.st_mode & 0o7777:04o}, not sticky)"
    else:
        why = ""
    if why and not allow:
        raise InvalidInputError(
            f"the job directory root {root} is {why}: they could plant job directories or "
            "results there that slurmscope would load, running their code as you. Use a root "
            "only you can write into (Cluster(root=...) or SLURMSCOPE_ROOT), `chmod go-w "
            f"{root}` (or `chmod +t` to make it sticky), pass share_with_group=True if it is "
            "your group's (SLURMSCOPE_SHARE_WITH_GROUP=1 for the slurmscope command too), or pass allow_writable_root=True (SLURMSCOPE_ALLOW_WRITABLE_ROOT=1, "
            "`slurmscope --allow-writable-root`) if you accept that: the job directories and "
            "files are still checked before anything is loaded."
        )
    for folder in (root / BY_ID, root / BY_ID / cluster_name):
        try:
            fst = folder.lstat()
        except FileNotFoundError:
            continue
        bad = problem(fst, directory=True)
        if bad is not None:
            raise InvalidInputError(
                f"{folder} (owner {owner_name(fst.st_uid)}, mode {fst.st_mode & 0o7777:04o}) is "
                f"{bad}: it could hold links to job directories planted by someone else. "
                f"Remove it (`rm -r {folder}`) if you did not make it; slurmscope makes it again. If you "
                f"made it, `chmod -R go-w {folder}`."
            )


def check_shared(root: Path, node_hosts: Iterable[str]) -> None:
    """Refuse ``root`` when the nodes ``node_hosts`` (other machines) would not see it."""
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        mounts = ""
    problem = root_problem(root, node_hosts, socket.gethostname(), mounts)
    if problem:
        raise InvalidInputError(problem)


#: Filesystems that live on one machine: job directories there are invisible to other nodes.
LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs", "vfat"}
)


def root_problem(root: Path, node_hosts: Iterable[str], this_host: str, mounts: str) -> str | None:
    """Why job directories under ``root`` cannot be seen by the cluster's nodes, or None.

    Nodes that are this machine see everything; other machines need a shared filesystem
    (NFS, Lustre, GPFS, BeeGFS, CephFS...), told apart by the filesystem type in
    ``/proc/mounts``.
    """
    local_names = {this_host, this_host.split(".")[0], "localhost", "::1"}
    remote = sorted(
        {
            h
            for h in node_hosts
            if h and h.split(".")[0] not in local_names and not h.startswith("127.")
        }
    )
    if not remote:
        return None
    best, fstype = "", ""
    text = str(root)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, fields[2]
    if fstype not in LOCAL_FILESYSTEMS:
        return None
    shown = ", ".join(remote[:5]) + (" ..." if len(remote) > 5 else "")
    return (
        f"the job directory root {root} is on a local {fstype} filesystem ({best}), but the "
        f"cluster's nodes ({shown}) are other machines and would not see it. Set "
        "Cluster(root=...) or SLURMSCOPE_ROOT to a directory on a shared filesystem (your home "
        "or project directory, usually), or pass check_shared_root=False if it is shared."
    )

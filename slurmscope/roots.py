"""The job-directory root: made and checked writable, and refused where the cluster's nodes
could not see it (a local filesystem when the nodes are other machines)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

from .errors import InvalidInputError


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The root to use: ``root``, else ``$SLURMSCOPE_ROOT``, else ``~/.slurmscope/jobs``."""
    chosen = root or os.environ.get("SLURMSCOPE_ROOT") or Path.home() / ".slurmscope" / "jobs"
    return Path(chosen).expanduser().absolute()


def make_root(root: Path) -> None:
    """Create ``root`` and check that it can be written, with errors that say what to do."""
    try:
        root.mkdir(parents=True, exist_ok=True)
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

"""Who may have written what slurmscope unpickles: OpenSSH's StrictModes for job directories.

Unpickling runs code, so nothing is unpickled (by the driver, ``attach``, the command line or
the worker) unless the file and the directories from the root down to it are owned by the
current user (or root) and writable by no one else:

- the root (the job directory's parent) is checked when a ``Cluster`` is made (the command
  line makes one too): refused when others can write into it, unless sticky or opted in
  (:func:`slurmscope.roots.check_writers`);
- the job directory and its ``results/`` are directories, owned by you or root, neither
  group- nor world-writable;
- the file itself is a regular file (not a link), owned by you or root, neither group- nor
  world-writable, checked on the open file (``fstat``), so that nothing can be swapped in
  between the check and the read.

The directory checks are made once per directory and process (:data:`_checked`); each file
read alone costs one ``fstat`` of a file that is opened anyway, and a ``get_results()`` of
many checks once that no one else can add or replace files anywhere from ``/`` down to
``results/`` (:func:`files_private`) and then reads them without a check each (+1% for
10,000 results, ``benchmarks/guard_cost.py``). Job directories are made private
(``0700``, files ``0600``) whatever the umask, or group-readable (``0750``/``0640``) with
``Cluster(share_with_group=True)``: a file's mode follows its directory's (:func:`file_mode`).

The worker imports this module inside every job: standard library only, and cheap.
"""

from __future__ import annotations

import os
import stat

from .errors import UnsafeJobDirectoryError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

#: The internal switch the benchmark (``benchmarks/guard_cost.py``) turns off to measure
#: what the checks cost; never off otherwise.
CHECKS = True
#: Directories (as given) whose chain from the root down has been checked in this process.
_checked: set[str] = set()
#: Never writable by anyone but the owner, whatever the options.
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
#: A regular file that neither group nor others can write: ``mode & this == S_IFREG``.
_KIND_AND_WRITE = 0o170000 | _OTHERS_WRITE  # the file-type bits (S_IFMT) and the write bits
#: The current user (as the process started) and root.
_TRUSTED = frozenset((os.geteuid(), 0))
#: What one read asks for when the size is not known (under malloc's mmap threshold).
_CHUNK = 1 << 16
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def trusted_owners() -> frozenset[int]:
    """The owners whose files may be loaded: the current user and root."""
    return _TRUSTED


_private_groups: dict[int, bool] = {}


def private_group(gid: int) -> bool:
    """Whether group ``gid`` is the current user's own: named as the user, the user's
    primary group, with no other member (the "user private group" Debian and Red Hat make
    for every user, whose umask 002 makes files group-writable: writable by no one else).
    Decided once per group and process."""
    known = _private_groups.get(gid)
    if known is None:
        try:
            import grp
            import pwd

            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(gid)
            known = (
                gid == me.pw_gid
                and group.gr_name == me.pw_name
                and set(group.gr_mem) <= {me.pw_name}
                and not any(u.pw_gid == gid and u.pw_uid != me.pw_uid for u in pwd.getpwall())
            )
        except (ImportError, KeyError):
            known = False
        _private_groups[gid] = known
    return known


def others_write(st: os.stat_result) -> int:
    """The write bits of ``st`` that let someone else write: others', and the group's
    unless the group is the user's private group (:func:`private_group`)."""
    bits = st.st_mode & _OTHERS_WRITE
    if bits & stat.S_IWGRP and private_group(st.st_gid):
        bits &= ~stat.S_IWGRP
    return bits


def dir_mode(share_with_group: bool) -> int:
    """The mode of the directories slurmscope makes: private, or group-readable."""
    return 0o750 if share_with_group else 0o700


def file_mode(directory_mode: int) -> int:
    """The mode of a file in a directory of mode ``directory_mode``: the directory's read
    bits, never group or world write (``0700`` gives ``0600``, ``0750`` gives ``0640``)."""
    return 0o600 | (directory_mode & (stat.S_IRGRP | stat.S_IROTH))


def make_dir(path: str, mode: int) -> None:
    """Make directory ``path`` with exactly ``mode`` (the umask cannot widen or narrow it;
    a set-group-ID bit inherited from the parent is kept, so a group root stays one)."""
    os.mkdir(path, 0o700)
    os.chmod(path, mode | (os.stat(path).st_mode & stat.S_ISGID))


def owner_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def problem(st: os.stat_result, *, directory: bool) -> str | None:
    """What is wrong with a file or directory of status ``st``, or ``None``."""
    kind = stat.S_IFMT(st.st_mode)
    if directory and kind != stat.S_IFDIR:
        return "not a directory (a link, or another kind of file)"
    if not directory and kind != stat.S_IFREG:
        return "not a regular file (a link, a device, a pipe)"
    if st.st_uid not in trusted_owners():
        return f"not owned by you ({owner_name(os.geteuid())}) or root"
    if others_write(st):
        return "writable by " + ("anyone" if st.st_mode & stat.S_IWOTH else "its group")
    return None


def refuse(loading: str, path: str, st: os.stat_result | None, why: str) -> UnsafeJobDirectoryError:
    """The error for ``loading`` refused because of ``path``: names both, the owner and the
    mode, and what to do."""
    seen = "" if st is None else f" (owner {owner_name(st.st_uid)}, mode {st.st_mode & 0o7777:04o})"
    return UnsafeJobDirectoryError(
        f"refusing to load {loading}: {'it' if path == loading else path}{seen} is {why}, so "
        "someone else could have "
        "put code there that loading it would run. If you made it and trust it, make it "
        f"yours and private (`chown -R $USER {path}; chmod -R go-w {path}`); otherwise remove "
        "it "
        "(or ask its owner to) and run the job again, with a root only you can write into."
    )


def check_directory(directory: str, loading: str) -> None:
    """Check ``directory`` and its ``results/`` (the root above them is checked when a
    ``Cluster`` is made), once per directory and process; ``UnsafeJobDirectoryError`` if it
    fails, ``FileNotFoundError`` if ``directory`` does not exist."""
    if directory in _checked or not CHECKS:
        return
    real = os.path.realpath(directory)
    for path in (real, os.path.join(real, "results")):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if path == real:
                raise
            continue
        why = problem(st, directory=True)
        if why is not None:
            raise refuse(loading, path, st, why)
    _checked.add(directory)


def open_file(path: str, directory: str) -> BinaryIO:
    """``path``, a file of job directory ``directory``, open for reading after the checks:
    ``UnsafeJobDirectoryError`` when they fail, ``FileNotFoundError`` when it is missing."""
    if not CHECKS:
        return open(path, "rb")
    check_directory(directory, path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: O_NOFOLLOW met a link
        _refuse_link(path, exc)
        raise
    fh = open(fd, "rb")  # noqa: SIM115 - returned open, or closed below
    st = os.fstat(fd)
    why = problem(st, directory=False)
    if why is not None:
        fh.close()
        raise refuse(path, path, st, why)
    return fh


def files_private(directory: str) -> bool:
    """Whether no one but you (and root) can add, replace, rename or even reach the result
    files of ``directory``: every directory from ``/`` down to the root is owned by you or
    root and writable by no one else, or sticky (as ``/tmp``: no one else can rename or
    remove your entries there), and the job directory and its ``results/`` are yours and
    private (``0700``). Then the result files are those you wrote, as you wrote them, and a
    many-result read (``get_results()``) checks this once (one ``lstat`` per directory)
    instead of each file (one ``fstat`` each). Checked anew at each such read, never cached.
    """
    if not CHECKS:
        return True
    real = os.path.realpath(directory)
    job = len(real)
    path = os.path.join(real, "results")
    try:
        while True:
            st = os.lstat(path)
            if st.st_uid not in _TRUSTED or not stat.S_ISDIR(st.st_mode):
                return False
            if len(path) >= job:  # the job directory and results/: private
                if st.st_mode & 0o077:
                    return False
            elif others_write(st) and not st.st_mode & stat.S_ISVTX:
                return False
            parent = os.path.dirname(path)
            if parent == path:
                return True
            path = parent
    except OSError:
        return False


def read_file(path: str, directory: str, each_file: bool = True) -> bytes | None:
    """The bytes of ``path``, a file of job directory ``directory`` (``None`` when it, or
    the directory, does not exist), after the checks of :func:`open_file` (those of the
    file itself only with ``each_file``: a caller that found :func:`files_private` true
    just before may leave them out).

    The read path of every result (``get_results()`` of a large map reads thousands):
    system calls only (open, fstat, read to the end, close), fewer than ``open().read()``
    makes (``benchmarks/guard_cost.py`` measures what the checks cost).
    """
    try:
        if CHECKS and directory not in _checked:
            check_directory(directory, path)
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: O_NOFOLLOW met a link
        if CHECKS:
            _refuse_link(path, exc)
        raise
    try:
        size = _CHUNK
        if CHECKS and each_file:  # without CHECKS: the same system calls but the checks'
            st = os.fstat(fd)
            if st.st_uid not in _TRUSTED or st.st_mode & _KIND_AND_WRITE != stat.S_IFREG:
                why = problem(st, directory=False)  # the slow path: a private group's g+w
                if why is not None:
                    raise refuse(path, path, st, why)
            size = st.st_size + 1
        chunks = [os.read(fd, size)]
        while chunks[-1]:  # to the end, however the file changed since fstat
            chunks.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 2 else b"".join(chunks)


def _refuse_link(path: str, exc: OSError) -> None:
    """Raise the refusal of ``path`` when opening it failed because it is a link."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise refuse(path, path, st, "a symbolic link") from exc


def check_link(root: str, link: str) -> str | None:
    """The job directory a ``by-id`` link of ``root`` points to, after the checks (``None``
    when there is no such link): the link and its folders are yours and private, and it
    points at a directory directly under ``root``. ``UnsafeJobDirectoryError`` otherwise."""
    loading = f"the job directory of {link}"
    try:
        st = os.lstat(link)
    except FileNotFoundError:
        return None
    folder = os.path.dirname(link)
    for path in (os.path.dirname(folder), folder):
        fst = os.lstat(path)
        why = problem(fst, directory=True)
        if why is not None:
            raise refuse(loading, path, fst, why)
    if not stat.S_ISLNK(st.st_mode):
        raise refuse(loading, link, st, "not a symbolic link")
    if st.st_uid not in trusted_owners():
        raise refuse(loading, link, st, f"a link not made by you ({owner_name(os.geteuid())})")
    target = os.path.realpath(link)
    if os.path.dirname(target) != os.path.realpath(root):
        raise refuse(loading, link, st, f"a link that points outside the root {root}, to {target}")
    check_directory(target, loading)
    return target

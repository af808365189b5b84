"""Files and directories only one OS user may use: made, checked and changed without ever
following a link (the embedded PostgreSQL's socket directory, its configuration files)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from jobfleet.errors import DatabaseUnavailable


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise DatabaseUnavailable(
            f"the embedded PostgreSQL admits OS users by name, and uid {uid} has none (no "
            "entry in /etc/passwd); add one, or set JOBFLEET_DATABASE_URL"
        ) from None


def describe_owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _seen_problem(path: Path) -> tuple[os.stat_result | None, str | None]:
    """`path` as lstat sees it, or why it is no directory of its own (never followed)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return None, f"cannot be inspected: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return None, "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return None, "is not a directory"
    return info, None


def _owner_problem(info: os.stat_result, uid: int) -> str | None:
    if info.st_uid != uid:
        return f"is owned by {describe_owner(info.st_uid)}, not {describe_owner(uid)}"
    return None


def private_dir_problem(path: Path, uid: int) -> str | None:
    """What keeps `path` from being a directory only `uid` can use, or None."""
    info, problem = _seen_problem(path)
    if info is None:
        return problem
    mode = stat.S_IMODE(info.st_mode)
    return _owner_problem(info, uid) or (
        f"has mode {mode:04o}, not 0700" if mode != 0o700 else None
    )


def claim_private_dir(path: Path, uid: int, gid: int) -> str | None:
    """Make `path` a directory that only `uid` can use, or say why it cannot be.

    Missing, it is made here (mode 0700, then given to uid). Existing, it is used only if it is
    a real directory owned by uid that nobody else could write to: one an older jobfleet made
    (mode 0755) is tightened to 0700. Anything else (another user's directory, one others
    could write to, a symbolic link, a file) is refused: never followed, chowned or changed.
    Links are not followed: the checks and changes go through a descriptor opened with
    O_NOFOLLOW, and it must be the very directory lstat saw.
    """
    try:
        os.mkdir(path, 0o700)
        made = True
    except FileExistsError:
        made = False
    except OSError as exc:
        return f"cannot be made: {exc.strerror}"
    seen, problem = _seen_problem(path)
    if seen is None:
        return problem
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        return f"cannot be opened: {exc.strerror}"
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
            return "was replaced while being checked"
        if made and info.st_uid == os.geteuid() != uid:
            os.fchown(fd, uid, gid)
            info = os.fstat(fd)
        if (problem := _owner_problem(info, uid)) is not None:
            return problem
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022:
            return f"has mode {mode:04o}: others could have put files in it"
        if mode != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return None


def set_owner_and_mode(path: Path, uid: int, gid: int, mode: int) -> None:
    """chown and chmod a directory just made, through a descriptor (a link is not followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_private_file(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` with `text`, mode 0600 (given to `owner`, a (uid, gid), if any).
    Written to a new file and renamed over the old, so a link planted in its place is never
    followed."""
    temporary = path.with_name(f".{path.name}.jobfleet-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def own_private_file(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Make sure `path` exists as a file of mode 0600 (given to `owner`, a (uid, gid), if
    any), never through a link: OSError if it is one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)

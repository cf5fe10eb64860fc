"""Users and groups as an image defines them: Docker's user specs turned into numbers.

Owns runc's rules for what ``user``, ``uid:gid``, ``name:group`` and ``--group-add`` mean,
reading the image's ``/etc/passwd`` and ``/etc/group`` **inside the image only** (through
:mod:`isolate.fs.inroot`, so a hostile symlink cannot reach a host file). It never reads the
host's user database. Containers (``--user``, :mod:`isolate.container.users`) and builds
(``USER``, ``--chown``) both resolve names here.
"""

from __future__ import annotations

import errno
from _collections_abc import Sequence

from isolate import _record
from isolate.errors import ConfigError, IsolateOSError
from isolate.fs import inroot

__all__ = ["ImageUser", "read_image_file", "resolve_user"]


def read_image_file(layers: Sequence[str], path: str) -> bytes | None:
    """The content of the regular file ``path`` as the image of ``layers`` (lowest first,
    an upper dir may be the last) shows it, or None (no such file, or not a regular file):
    read with :func:`isolate.fs.inroot.read_file`, which never leaves the image.

    Raises:
        IsolateOSError: a layer cannot be read for another reason.
    """
    try:
        return inroot.read_file(list(layers), path)
    except IsolateOSError as exc:
        if exc.errno in (errno.EISDIR, errno.EINVAL, errno.ELOOP, errno.ENOTDIR):
            return None
        raise


@_record.record
class ImageUser:
    """Who a container's process is: numeric ids, supplementary groups, and HOME."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str | None = None


def _entries(data: bytes | None, fields: int) -> list[list[str]]:
    out = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < fields:
            parts += [""] * (fields - len(parts))
        out.append(parts)
    return out


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 2**32 - 1 else None


def _group_id(group: str, groups: Sequence[Sequence[str]], word: str) -> int:
    """A gid given as a number or a name of the image's /etc/group (runc's message, whose
    first word differs between --user and --group-add)."""
    number = _int(group)
    if number is not None:
        return number
    match = next((e for e in groups if e[0] == group), None)
    found = _int(match[2]) if match is not None else None
    if found is None:
        raise ConfigError(f"{word} to find group {group}: no matching entries in group file")
    return found


def resolve_user(spec: str | None, group_add: Sequence[str], layers: Sequence[str]) -> ImageUser:
    """Turn ``--user`` (and ``--group-add``) into ids as runc does, reading the image's own
    ``/etc/passwd`` and ``/etc/group``.

    An empty spec is root. A name must be in passwd; a numeric uid need not be (then gid 0
    and HOME ``/``). With a name and no group, the user's primary group is the gid and every
    group listing the name is a supplementary group; an explicit group replaces both.
    ``group_add`` entries (names or numbers) are added to the supplementary groups.

    Raises:
        ConfigError: a name or group the image does not define, in runc's words.
    """
    user_part, _, group_part = (spec or "").partition(":")
    passwd = _entries(read_image_file(layers, "/etc/passwd"), 7)
    need_groups = bool(group_part and _int(group_part) is None) or bool(group_add) \
        or not group_part
    groups = _entries(read_image_file(layers, "/etc/group"), 4) if need_groups else []
    uid, gid, home, name = 0, 0, "/", None
    numeric = _int(user_part) if user_part else 0
    entry = None
    for p in passwd:
        if (numeric is None and p[0] == user_part) or (
                numeric is not None and _int(p[2]) == numeric):
            entry = p
            break
    if numeric is None and entry is None:
        raise ConfigError(f"unable to find user {user_part}: no matching entries in passwd file")
    if entry is not None:
        uid = _int(entry[2]) or 0
        gid = _int(entry[3]) or 0
        home = entry[5] or "/"
        name = entry[0]
    elif numeric is not None:
        uid = numeric
    supplementary: list[int] = []
    if group_part:
        gid = _group_id(group_part, groups, "unable")
    elif name is not None:
        for e in groups:
            members = [m.strip() for m in e[3].split(",") if m.strip()]
            gnum = _int(e[2])
            if name in members and gnum is not None and gnum not in supplementary:
                supplementary.append(gnum)
    for extra in group_add:
        g = _group_id(extra, groups, "Unable")
        if g not in supplementary:
            supplementary.append(g)
    return ImageUser(uid, gid, tuple(supplementary), home, name)

"""``isolate pull|push|images|rmi|tag|import|save|load|inspect``: the image store from a shell.

Thin adapters over :class:`isolate.image.Store`; each prints what Docker's command of the same
name prints (ids, names, a table, JSON). Progress bars go to stderr, and only to a terminal.
"""

from __future__ import annotations

import _thread
import sys
import time

from isolate._typing import TYPE_CHECKING
from isolate.cli._common import STORE_OPTION
from isolate.errors import IsolateError

if TYPE_CHECKING:
    import argparse
    import datetime
    from typing import IO, Any

    # isolate.image pulls in http.client and email (over 100 ms): only the image commands
    # import it, so 'isolate run -- CMD' starts without it.
    from isolate.image import Image, Progress, Store

__all__ = ["STORE_OPTION", "ProgressBars", "add_store_option", "open_store", "progress_for",
           "register"]


def add_store_option(p: argparse.ArgumentParser) -> None:
    """Add ``--store DIR`` to a subcommand's parser."""
    flags, kw = STORE_OPTION
    p.add_argument(*flags, **kw)


def open_store(args: argparse.Namespace) -> Store:
    """The store ``--store`` names, else ``$ISOLATE_STORE``, else the default one (the one a
    ``Sandbox(image=...)`` uses, by the same code)."""
    from isolate._image_root import open_store as store_at

    return store_at(args.store)


def keep_seccomp_programs(store: Store) -> None:
    """Keep the seccomp programs this process compiles in ``store`` (``seccomp/``), where
    the next command finds them: each is a short-lived process, and assembling Docker's
    profile is ~2.5 ms of each start (see :func:`isolate.security.cache_programs`). For the
    commands that start processes; the others need not load the security module."""
    import os

    from isolate import security

    security.cache_programs(os.path.join(store.root, "seccomp"))


class ProgressBars:
    """Draws one line per blob of a pull or push on a terminal, redrawn in place.

    Events come from worker threads; drawing is serialised and throttled (a redraw at most
    every 0.1 s, plus one whenever a blob finishes).
    """

    def __init__(self, stream: IO[str], title: str) -> None:
        self.stream = stream
        self.title = title
        self.lines: dict[str, str] = {}
        self.drawn = 0
        self.last = 0.0
        self.lock = _thread.allocate_lock()

    def __call__(self, event: Progress) -> None:
        short = event.digest.removeprefix("sha256:")[:12]
        if event.state in ("downloading", "uploading", "resumed") and event.total:
            width = 30
            filled = min(width, width * event.done // event.total)
            bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
            text = (f"{short}: {event.state.capitalize():<12}[{bar}] "
                    f"{_size(event.done)}/{_size(event.total)}")
        else:
            text = f"{short}: {_STATE_TEXT.get(event.state, event.state)} ({event.kind})"
        with self.lock:
            self.lines[event.digest] = text
            now = time.monotonic()
            if event.state in ("done", "exists") or now - self.last >= 0.1:
                self.last = now
                self._draw()

    def _draw(self) -> None:
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}A")
        for text in [self.title, *self.lines.values()]:
            out.append(f"\x1b[2K{text}\n")
        self.drawn = 1 + len(self.lines)
        self.stream.write("".join(out))
        self.stream.flush()

    def close(self) -> None:
        """Draw the bars a last time."""
        with self.lock:
            if self.lines:
                self._draw()


_STATE_TEXT = {"exists": "Already exists", "done": "Complete"}


def progress_for(title: str) -> ProgressBars | None:
    """Bars on stderr when it is a terminal; None (quiet) in a pipe or file."""
    return ProgressBars(sys.stderr, title) if sys.stderr.isatty() else None


def _size(n: int) -> str:
    from isolate.cli._common import decimal_size

    return decimal_size(n)


def _parse_time(text: str | None) -> datetime.datetime | None:
    """An image's RFC 3339 time as an aware datetime (``Z`` and a naive time read as UTC), or
    None when it is missing or not a time."""
    import datetime

    try:
        when = datetime.datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)


def _created_at(created: str | None) -> tuple[str, str]:
    """(CreatedAt, CreatedSince) as ``docker images`` prints them."""
    if not created:
        return "N/A", "N/A"
    import datetime  # only the listing shows ages

    from isolate._units import human_duration

    when = _parse_time(created)
    if when is None:
        return created, created
    seconds = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
    at = when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
    return at, f"{human_duration(max(0.0, seconds))} ago"


def _has_label(img: Image, want: str) -> bool:
    """Whether an image carries the label a ``label=KEY[=VALUE]`` filter names."""
    key, sep, value = want.partition("=")
    labels = img.config.labels or {}
    return key in labels and (not sep or labels[key] == value)


def _since(created: str | None) -> str:
    """CREATED as ``docker images`` and ``docker history`` print it ("5 minutes ago")."""
    return _created_at(created)[1]


# -- commands --------------------------------------------------------------------------------

def cmd_pull(args: argparse.Namespace) -> int:
    store = open_store(args)
    bars = progress_for(f"Pulling {args.ref}")
    try:
        img = store.pull(args.ref, platform=args.platform, insecure=args.insecure,
                         progress=bars, auth_file=args.auth_file)
    finally:
        if bars is not None:
            bars.close()
    print(img.id)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    store = open_store(args)
    target = args.target or args.image
    bars = progress_for(f"Pushing {target}")
    try:
        digest = store.push(args.image, args.target, insecure=args.insecure, progress=bars,
                            auth_file=args.auth_file)
    finally:
        if bars is not None:
            bars.close()
    print(digest)
    return 0


_IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
_IMAGES_DIGESTS_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t"
                         "{{.CreatedSince}}\t{{.Size}}")
_IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                   "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                   "Digest": "DIGEST", "Containers": "CONTAINERS"}
_IMAGES_FILTERS = ("dangling", "reference", "label", "before", "since")


def _names(img: Image) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) rows of an image, as ``docker images`` shows its names."""
    refs = [_parse_reference(name) for name in sorted(img.tags)]
    digests = {r.name: r.digest for r in refs if r.digest is not None}
    # A repo@digest name (a pull by tag records one) is shown as docker images shows it:
    # not at all beside a tag of the same repository, else as REPO <none>.
    tagged = {r.name for r in refs if r.tag is not None}
    shown: list[tuple[str, str, str]] = []
    for ref in refs:
        if ref.tag is None and ref.name in tagged:
            continue
        repo = ref.with_tag("x").familiar.rsplit(":", 1)[0]
        row = (repo, ref.tag or "<none>", digests.get(ref.name) or "<none>")
        if row not in shown:
            shown.append(row)
    return shown or [("<none>", "<none>", "<none>")]


def _row(img: Image, repo: str, tag: str, digest: str, no_trunc: bool) -> dict[str, str]:
    at, since = _created_at(img.created)
    return {"Repository": repo, "Tag": tag, "Digest": digest,
            "ID": img.id if no_trunc else img.short_id, "CreatedAt": at, "CreatedSince": since,
            "Size": _size(img.size), "VirtualSize": _size(img.size), "SharedSize": "N/A",
            "UniqueSize": "N/A", "Containers": "N/A"}


def _matches(img: Image, filters: dict[str, list[str]], by_ref: dict[str, Image]) -> bool:
    import fnmatch

    if "dangling" in filters:
        want = {v.lower() for v in filters["dangling"]}
        if not want <= {"true", "false", "1", "0"}:
            raise _invalid_filter("dangling", filters["dangling"][0])
        if (not img.tags) != bool(want & {"true", "1"}):
            return False
    if "reference" in filters:
        names = []
        for repo, tag, _ in _names(img):
            names += [repo, f"{repo}:{tag}"]
        if not any(fnmatch.fnmatchcase(n, pat) for pat in filters["reference"] for n in names):
            return False
    if not all(_has_label(img, want) for want in filters.get("label", ())):
        return False
    for key in ("before", "since"):
        for ref in filters.get(key, ()):
            other = by_ref.get(ref)
            if other is None:
                raise _invalid_filter(key, ref)
            mine, theirs = img.created or "", other.created or ""
            if (key == "before" and not mine < theirs) or (key == "since" and not mine > theirs):
                return False
    return True


def _invalid_filter(key: str, value: str | None = None) -> Exception:
    from isolate.errors import ConfigError

    return ConfigError(f"invalid filter '{key}'" + (f": {value!r}" if value is not None else ""))


def cmd_images(args: argparse.Namespace) -> int:
    from isolate.cli._common import parse_filters
    from isolate.cli.formatting import print_rows

    filters = parse_filters(args.filter)
    for key in filters:
        if key not in _IMAGES_FILTERS:
            raise _invalid_filter(key)
    store = open_store(args)
    images = list(reversed(store.images()))  # newest first, as docker images lists them
    if args.repository is not None:
        filters.setdefault("reference", []).append(args.repository)
    hidden = set() if args.all else store.intermediates()
    by_ref: dict[str, Image] = {}
    for key in ("before", "since"):
        for ref in filters.get(key, ()):
            try:
                by_ref[ref] = store.get(ref)
            except IsolateError:
                raise _invalid_filter(key, ref) from None
    chosen = [img for img in images if img.id not in hidden and _matches(img, filters, by_ref)]
    if args.quiet and args.format is None:
        seen = set()
        for img in chosen:
            if img.id not in seen:
                seen.add(img.id)
                print(img.id if args.no_trunc else img.short_id)
        return 0
    rows = [_row(img, repo, tag, digest, args.no_trunc)
            for img in chosen for repo, tag, digest in _names(img)]
    table = _IMAGES_DIGESTS_TABLE if args.digests else _IMAGES_TABLE
    print_rows(rows, args.format, table, _IMAGES_HEADERS)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from isolate.cli._common import each

    store = open_store(args)

    def remove(ref: str) -> None:
        removed = store.remove(ref, force=args.force, prune=not args.no_prune)
        for name in removed.untagged:
            print(f"Untagged: {name}")
        for image_id in removed.deleted:
            print(f"Deleted: {image_id}")

    status = each(args.images, remove, echo=False)  # as docker rmi: a failure passed over
    if args.prune:
        report = store.gc()
        print(f"Deleted: {report.images} image(s), {report.blobs} blob(s), {report.layers} "
              f"layer(s), {_size(report.bytes_freed)}")
    return status


def _until(value: str) -> datetime.datetime:
    """A prune ``until=`` filter as a time: a Go duration ago (``24h``, ``90m``), a Unix time
    or an RFC 3339 time."""
    import datetime
    import re as _re

    from isolate.errors import ConfigError

    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}
    parts = _re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if parts and "".join(n + u for n, u in parts) == value:
        seconds = sum(float(n) * units[u] for n, u in parts)
        return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    if _re.fullmatch(r"\d+(\.\d+)?", value):
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
    when = _parse_time(value)
    if when is None:
        raise ConfigError(f"invalid filter 'until={value}': not a duration (24h) or a time")
    return when


def cmd_image_prune(args: argparse.Namespace) -> int:
    """``image prune``: dangling images (with ``-a``: every image no container uses), then
    the blobs and layers nothing references."""
    from isolate.cli._common import confirm, parse_filters

    filters = parse_filters(args.filter)
    for key in filters:
        if key not in ("until", "label", "label!"):
            raise _invalid_filter(key)
    until = [_until(v) for v in filters.get("until", ())]
    if not args.force and not confirm(
            "WARNING! This will remove all images without at least one container associated "
            "to them." if args.all else "WARNING! This will remove all dangling images."):
        return 0
    store = open_store(args)

    def chosen(img: Image) -> bool:
        if not all(_has_label(img, want) for want in filters.get("label", ())):
            return False
        if any(_has_label(img, want) for want in filters.get("label!", ())):
            return False
        if until:
            stamp = _parse_time(img.created)
            if stamp is None or any(stamp >= u for u in until):
                return False
        return True

    untagged: list[str] = []
    deleted: list[str] = []
    kept: list[str] = []  # dangling images the filters leave out: gc must keep them
    for img in store.images():
        if not chosen(img):
            if not img.tags:
                kept.append(img.id)
            continue
        if not img.tags or not args.all:
            continue  # gc removes the dangling ones; without -a a tagged one stays
        try:
            removed = store.remove(img.id)  # refused while a container or sandbox holds it
        except IsolateError:
            continue
        untagged += removed.untagged
        deleted += removed.deleted
    report = store.gc(keep=kept)
    deleted += [i for i in report.image_ids if i not in deleted]
    if untagged or deleted:
        print("Deleted Images:")
        for name in untagged:
            print(f"untagged: {name}")
        for image_id in deleted:
            print(f"deleted: {image_id}")
        print()
    print(f"Total reclaimed space: {_size(report.bytes_freed)}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    open_store(args).tag(args.source, args.target)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from isolate.image import ImageConfig

    store = open_store(args)
    changes: dict[str, Any] = {}
    if args.cmd is not None:
        changes["cmd"] = args.cmd
    if args.entrypoint is not None:
        changes["entrypoint"] = args.entrypoint
    if args.env:
        changes["env"] = args.env
    if args.workdir:
        changes["working_dir"] = args.workdir
    if args.user:
        changes["user"] = args.user
    config = ImageConfig(**changes) if changes else None
    img = store.import_tarball(args.file, args.ref, config=config, platform=args.platform)
    print(img.id)
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    store = open_store(args)
    store.save(list(args.images), args.output, format=args.format)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    store = open_store(args)
    for img in store.load(args.input, args.ref, platform=args.platform):
        names = sorted(img.tags)  # the names this load gave it
        if names:
            for name in names:
                print(f"Loaded image: {name}")
        else:
            print(f"Loaded image ID: {img.id}")
    return 0


def inspect_doc(store: Store, img: Image) -> dict[str, Any]:
    """What ``isolate inspect`` prints for one image (Docker's field names where they exist)."""
    return {
        "Id": img.id,
        "RepoTags": sorted(img.tags),
        "Created": img.created,
        "Os": img.platform.os,
        "Architecture": img.platform.architecture,
        **({"Variant": img.platform.variant} if img.platform.variant else {}),
        "Config": img.config.to_oci(),
        "RootFS": {"Type": "layers", "Layers": list(img.diff_ids)},
        "Manifest": {"Digest": img.manifest_digest, "MediaType": img.manifest_media_type},
        "Layers": [{"Digest": d.digest, "Size": d.size, "MediaType": d.media_type}
                   for d in img.layers],
        "Size": img.size,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_inspect

    store = open_store(args)
    docs = []
    failed = False
    for ref in args.images:  # as docker image inspect: those found, an error for each other
        try:
            docs.append(inspect_doc(store, store.get(ref)))
        except IsolateError as exc:
            print(f"isolate: {exc}", file=sys.stderr)
            failed = True
    print_inspect(docs, getattr(args, "format", None))
    return 125 if failed else 0


def _command_form(value: str) -> list[str]:
    """Dockerfile's two forms: exec form (a JSON array of strings) or shell form."""
    if value.lstrip().startswith("["):
        from isolate import (
            _json as json,  # here: most commands that import this module never parse JSON
        )

        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: arrays nested too deep
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            shown = repr(value) if len(value) <= 80 else (
                f"{value[:60]!r}... ({len(value)} characters)")
            import argparse  # (loaded: this runs while argparse parses)

            raise argparse.ArgumentTypeError(f"{shown} is not a JSON array of strings")
        return parsed
    return ["/bin/sh", "-c", value]


def register(sub: Any) -> None:
    """Add the image subcommands to the ``isolate`` parser's subparsers, and Docker's
    ``image`` group of the same commands (``image ls``, ``image rm``, ``image prune``...;
    ``image history`` is build's, added to the group by :func:`isolate.cli.build_parser`)."""
    _define(_adder(sub))
    group = sub.add_parser("image", help="manage images", description="Manage images")
    gsub = group.add_subparsers(dest="image_command", metavar="COMMAND",
                                parser_class=type(group))
    gsub.required = True
    _define(_adder(gsub), group=True)


def _adder(sub: Any) -> Any:
    def add(name: str, help: str, handler: Any, *,
            aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help,
                                                    aliases=list(aliases))
        add_store_option(p)
        p.set_defaults(handler=handler)
        return p
    return add


def _define(add: Any, *, group: bool = False) -> None:
    """The image commands, named as at the top level or (``group``) inside ``image``."""
    def registry_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--insecure", metavar="HOST", action="append", default=[],
                       help="allow plain HTTP to this registry (loopback ones always may)")
        p.add_argument("--auth-file", metavar="FILE", default=None,
                       help="Docker config.json with credentials")

    platform_help = "os/arch[/variant] (default: this host's)"

    p = add("pull", "pull an image from a registry", cmd_pull)
    p.add_argument("ref", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", default=None, help=platform_help)
    registry_options(p)

    p = add("push", "push an image to a registry", cmd_push)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("target", metavar="NAME[:TAG]", nargs="?", default=None,
                   help="where to push (default: the image's own name)")
    registry_options(p)

    if group:
        p = add("ls", "list images", cmd_images, aliases=("list",))
    else:
        p = add("images", "list images", cmd_images)
    p.add_argument("repository", metavar="REPOSITORY[:TAG]", nargs="?", default=None,
                   help="only images of this name (a pattern, as --filter reference=)")
    p.add_argument("-a", "--all", action="store_true",
                   help="show all images (the intermediate images of builds are hidden)")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("-f", "--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], "
                   "before=IMAGE, since=IMAGE")
    p.add_argument("--format", metavar="FORMAT", default=None,
                   help="'table', 'json', or a Go template ({{.Repository}}:{{.Tag}})")

    if group:
        p = add("rm", "remove images", cmd_rmi, aliases=("remove",))
    else:
        p = add("rmi", "remove images", cmd_rmi)
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("-f", "--force", action="store_true",
                   help="remove an image by id even if a container or sandbox uses it")
    p.add_argument("--no-prune", action="store_true",
                   help="do not delete untagged parents (the step images of a build)")
    p.add_argument("--prune", action="store_true",
                   help="then free blobs and layers nothing references (gc)")

    if group:
        p = add("prune", "remove unused images", cmd_image_prune)
        p.add_argument("-a", "--all", action="store_true",
                       help="remove all images no container uses, not just dangling ones")
        p.add_argument("-f", "--force", action="store_true",
                       help="do not prompt for confirmation")
        p.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[],
                       help="until=24h|TIME, label=KEY[=VALUE], label!=KEY[=VALUE]")

    p = add("tag", "give an image another name", cmd_tag)
    p.add_argument("source", metavar="IMAGE")
    p.add_argument("target", metavar="NAME[:TAG]")

    p = add("import", "make an image from a root filesystem tarball", cmd_import)
    p.add_argument("file", metavar="FILE", help="tar, tar.gz or tar.zst of a root filesystem")
    p.add_argument("ref", metavar="NAME[:TAG]", nargs="?", default=None)
    p.add_argument("--platform", default=None,
                   help="the platform the image is recorded for (default: this host's)")
    p.add_argument("--cmd", default=None, metavar="CMD", type=_command_form,
                   help="the image's Cmd: a JSON array, or a string run by /bin/sh -c")
    p.add_argument("--entrypoint", default=None, metavar="CMD", type=_command_form,
                   help="the image's Entrypoint (as --cmd)")
    p.add_argument("--env", "-e", action="append", default=[], metavar="K=V")
    p.add_argument("--workdir", "-w", default=None, metavar="DIR")
    p.add_argument("--user", "-u", default=None, metavar="USER[:GROUP]")

    p = add("save", "write images to an archive", cmd_save)
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--format", choices=("docker-archive", "oci-archive", "oci"),
                   default="docker-archive")

    p = add("load", "read images from an archive or OCI layout", cmd_load)
    p.add_argument("-i", "--input", required=True, metavar="FILE")
    p.add_argument("ref", metavar="NAME[:TAG]", nargs="?", default=None,
                   help="name for the image of a one-image archive; for several, a repository "
                   "(no tag) under which each keeps its own tag")
    p.add_argument("--platform", default=None,
                   help="of an image that comes for several platforms, the one to load "
                   "(default: this host's)")

    p = add("inspect", "show images as JSON", cmd_inspect)
    p.add_argument("images", metavar="IMAGE", nargs="+")
    if group:
        p.add_argument("-f", "--format", metavar="FORMAT", default=None,
                       help="a Go template ({{.Id}}), or 'json'")


def _parse_reference(name: str) -> Any:
    from isolate.image import Reference

    return Reference.parse(name)

"""``isolate pull|push|images|rmi|tag|import|save|load|inspect``: the image store from a shell.

Thin adapters over :class:`isolate.image.Store`; each prints what Docker's command of the same
name prints (ids, names, a table, JSON). Progress bars go to stderr, and only to a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    # isolate.image pulls in http.client and email (over 100 ms): only the image commands
    # import it, so 'isolate run -- CMD' starts without it.
    from isolate.image import Image, Progress, Store

__all__ = ["ProgressBars", "add_store_option", "open_store", "progress_for", "register"]


def add_store_option(p: argparse.ArgumentParser) -> None:
    """Add ``--store DIR`` to a subcommand's parser."""
    p.add_argument("--store", metavar="DIR", default=None,
                   help="image store (default: $ISOLATE_STORE, else /var/lib/isolate as root, "
                   "$XDG_DATA_HOME/isolate otherwise)")


def open_store(args: argparse.Namespace) -> Store:
    """The store ``--store`` names, else ``$ISOLATE_STORE``, else the default one (the one a
    ``Sandbox(image=...)`` uses, by the same code)."""
    from isolate._image_root import open_store as store_at

    return store_at(args.store)


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
        self.lock = threading.Lock()

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
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{n}B"


def _since(created: str | None) -> str:
    if not created:
        return "N/A"
    try:
        import datetime  # only 'isolate images' shows ages

        when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created
    seconds = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
    for unit, scale in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * scale:
            return f"{int(seconds // scale)} {unit} ago"
    return "Less than a minute ago" if seconds < 60 else "About a minute ago"


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


def _rows(images: list[Image]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for img in reversed(images):  # newest first, as docker images lists them
        refs = [_parse_reference(name) for name in sorted(img.tags)]
        # A repo@digest name (a pull by tag records one) is shown as docker images shows it:
        # not at all beside a tag of the same repository, else as REPO <none>.
        tagged = {r.name for r in refs if r.tag is not None}
        shown: list[tuple[str, str]] = []
        for ref in refs:
            if ref.tag is None and ref.name in tagged:
                continue
            repo = ref.with_tag("x").familiar.rsplit(":", 1)[0]
            if (repo, ref.tag or "<none>") not in shown:
                shown.append((repo, ref.tag or "<none>"))
        for repo, tag in shown or [("<none>", "<none>")]:
            rows.append((repo, tag, img.short_id, _since(img.created), _size(img.size)))
    return rows


def cmd_images(args: argparse.Namespace) -> int:
    store = open_store(args)
    images = store.images()
    if args.quiet:
        seen = set()
        for img in reversed(images):
            if img.id not in seen:
                seen.add(img.id)
                print(img.short_id if not args.no_trunc else img.id)
        return 0
    header = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
    rows = _rows(images)
    if args.no_trunc:
        ids = {img.short_id: img.id for img in images}
        rows = [(r, t, ids[i], c, s) for r, t, i, c, s in rows]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    store = open_store(args)
    for ref in args.images:
        for name in store.rmi(ref, force=args.force):
            print(f"Untagged: {name}")
    if args.prune:
        report = store.gc()
        print(f"Deleted: {report.images} image(s), {report.blobs} blob(s), {report.layers} "
              f"layer(s), {_size(report.bytes_freed)}")
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
    store = open_store(args)
    docs = [inspect_doc(store, store.get(ref)) for ref in args.images]
    json.dump(docs, sys.stdout, indent=4)
    sys.stdout.write("\n")
    return 0


def _command_form(value: str) -> list[str]:
    """Dockerfile's two forms: exec form (a JSON array of strings) or shell form."""
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: arrays nested too deep
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            shown = repr(value) if len(value) <= 80 else (
                f"{value[:60]!r}... ({len(value)} characters)")
            raise argparse.ArgumentTypeError(f"{shown} is not a JSON array of strings")
        return parsed
    return ["/bin/sh", "-c", value]


def register(sub: Any) -> None:
    """Add the image subcommands to the ``isolate`` parser's subparsers."""
    def add(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        add_store_option(p)
        p.set_defaults(handler=handler)
        return p

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

    p = add("images", "list images", cmd_images)
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")

    p = add("rmi", "remove image names (and images no name or container keeps)", cmd_rmi)
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("-f", "--force", action="store_true",
                   help="remove an image by id even if a sandbox holds it")
    p.add_argument("--prune", action="store_true",
                   help="then free blobs and layers nothing references (gc)")

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


def _parse_reference(name: str) -> Any:
    from isolate.image import Reference

    return Reference.parse(name)

"""``isolate build``, ``isolate history`` and ``isolate builder prune``: Dockerfile builds.

Thin adapters over :class:`isolate.image.build.Builder` (RUN steps in containers) and the
image store. ``build`` prints one line per step to stderr (``[2/5] RUN ...``), the RUN
output as it comes, ``CACHED`` or the time each step took, and the image id last, alone, on
stdout; a failed build prints one error line and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any

from isolate import _json as json
from isolate.cli import UsageError
from isolate.cli.images import add_store_option, open_store
from isolate.errors import IsolateError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``build``, ``history`` and ``builder`` to the ``isolate`` parser's subparsers."""
    p = sub.add_parser("build", help="build an image from a Dockerfile",
                       usage="isolate build [OPTIONS] PATH | -",
                       description="Build an image from the Dockerfile in PATH (the build "
                       "context), or from a context tar read from stdin ('-'). RUN steps run "
                       "in containers of the image so far, as docker build runs them.")
    p.add_argument("context", metavar="PATH", help="the build context directory, or - for a "
                   "tar on stdin")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]",
                   help="name the image (may be given several times)")
    p.add_argument("-f", "--file", default=None, metavar="FILE",
                   help="the Dockerfile (default: PATH/Dockerfile; - reads it from stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V",
                   help="a build argument (K alone: take its value from here)")
    p.add_argument("--label", action="append", default=[], metavar="K=V",
                   help="a label for the image")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--pull", action="store_true", help="always pull base images")
    p.add_argument("--iidfile", default=None, metavar="FILE",
                   help="write the image id to FILE")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the image id (and errors)")
    p.add_argument("--network", default="host", metavar="MODE",
                   help="networking of RUN steps: host (the default), none, bridge or a "
                   "network's name")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=FILE",
                   help="a secret for RUN --mount=type=secret (also id=ID,env=VAR)")
    p.add_argument("--platform", default=None, metavar="OS/ARCH",
                   help="only this machine's platform can be built")
    p.add_argument("--target", default=None, metavar="STAGE",
                   help="build this stage (and what it needs) only")
    p.add_argument("--progress", choices=("auto", "plain", "tty"), default="auto",
                   help="plain: one line per event; tty: with colours (auto: tty on a "
                   "terminal)")
    add_store_option(p)
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("history", help="show the history of an image",
                       description="Show how an image was made: one line per history entry, "
                       "newest first.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten the output")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("-H", "--human", default=True, action=argparse.BooleanOptionalAction,
                   help="sizes and dates in human-readable form (default)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_store_option(p)
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("builder", help="manage the build cache")
    bsub = p.add_subparsers(dest="builder_command", metavar="COMMAND")
    bsub.required = True
    prune = bsub.add_parser("prune", help="remove the build cache",
                            description="Remove every cached build step and every RUN "
                            "--mount=type=cache directory, then free the layers no image "
                            "uses (the store's gc, as 'isolate rmi --prune').")
    prune.add_argument("-a", "--all", action="store_true",
                       help="accepted for Docker compatibility (the whole cache goes)")
    prune.add_argument("-f", "--force", action="store_true",
                       help="accepted for Docker compatibility (there is no prompt)")
    prune.add_argument("--keep-mounts", action="store_true",
                       help="keep the RUN --mount=type=cache directories")
    add_store_option(prune)
    prune.set_defaults(handler=cmd_builder_prune)


def _pairs(items: list[str], what: str, *, from_env: bool) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"isolate build: {what} must be K=V, not {item!r}")
        if not eq:
            if not from_env:
                raise UsageError(f"isolate build: {what} must be K=V, not {item!r}")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


class _Printer:
    """Renders build events on ``stream`` (plain lines, or with colours for a terminal).

    RUN output is printed a line at a time, each line after its step's label, so that the
    output of stages built at the same time stays readable (a line a step has not finished
    yet is printed when it does, or when the step ends).
    """

    def __init__(self, stream: IO[str], *, tty: bool, quiet: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.quiet = quiet
        self.partial: dict[int, tuple[str, bytes]] = {}

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _output(self, label: str, lines: list[bytes]) -> None:
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            self.stream.write(f"{label} \x1b[2m{text}\x1b[0m\n" if self.tty
                              else f"{label} {text}\n")
        self.stream.flush()

    def flush(self) -> None:
        """Print the unfinished lines of steps that did not end (a failed build)."""
        for label, rest in self.partial.values():
            self._output(label, [rest])
        self.partial.clear()

    def __call__(self, event: Any) -> None:
        from isolate.image.build import StepFinished, StepOutput, StepStarted

        if self.quiet:
            return
        if isinstance(event, StepStarted):
            text = f"{event.label} {event.step.text}"
            self._line(f"\x1b[1m{text}\x1b[0m" if self.tty else text)
        elif isinstance(event, StepOutput):
            _label, before = self.partial.pop(id(event.step), ("", b""))
            lines = (before + event.data).split(b"\n")
            if lines[-1]:
                self.partial[id(event.step)] = (event.label, lines[-1])
            self._output(event.label, lines[:-1])
        elif isinstance(event, StepFinished):
            label, rest = self.partial.pop(id(event.step), ("", b""))
            if rest:
                self._output(label, [rest])
            if event.step.kind in ("from", "config"):
                return
            what = "CACHED" if event.cached else f"DONE {event.seconds:.1f}s"
            if self.tty:
                what = f"\x1b[{'36' if event.cached else '32'}m{what}\x1b[0m"
            self._line(f"{event.label} {what}")


def cmd_build(args: argparse.Namespace) -> int:
    from isolate._container_runner import ContainerStepRunner
    from isolate.image.build import Builder, BuildOptions, BuildRequest, StepFailed

    if args.context == "-" and args.file == "-":
        raise UsageError("isolate build: the context and the Dockerfile cannot both be read "
                         "from stdin")
    store = open_store(args)
    tty = args.progress == "tty" or (args.progress == "auto" and sys.stderr.isatty())
    printer = _Printer(sys.stderr, tty=tty, quiet=args.quiet)
    started = time.monotonic()
    try:
        options = BuildOptions(
            build_args=_pairs(args.build_arg, "--build-arg", from_env=True),
            target=args.target, labels=_pairs(args.label, "--label", from_env=False),
            no_cache=args.no_cache, pull=args.pull, network=args.network,
            platform=args.platform, secrets=tuple(args.secret))
        dockerfile_text = None
        dockerfile = args.file
        if args.file == "-":
            dockerfile_text = sys.stdin.buffer.read()
            dockerfile = None
        elif args.file is not None and args.context != "-":
            dockerfile = os.path.abspath(args.file)
        builder = Builder(store, ContainerStepRunner(), progress=printer)
        if args.context == "-":
            result = builder.build(BuildRequest(
                context_tar=sys.stdin.buffer, dockerfile=dockerfile,
                dockerfile_text=dockerfile_text, tags=tuple(args.tag), options=options))
        else:
            result = builder.build(BuildRequest(
                context=args.context, dockerfile=dockerfile, dockerfile_text=dockerfile_text,
                tags=tuple(args.tag), options=options))
    except StepFailed as exc:
        printer.flush()
        if args.quiet and exc.output_tail:
            sys.stderr.write(exc.output_tail)
        printer._line(f"isolate: {exc}")
        return 1
    except IsolateError as exc:
        printer.flush()
        printer._line(f"isolate: {exc}")
        return 1
    image = result.image
    if args.iidfile:
        with open(args.iidfile, "w", encoding="ascii") as f:
            f.write(image.id)
    if not args.quiet:
        for warning in result.warnings:
            printer._line(f"[warning] {warning}")
        for tag in image.tags:
            printer._line(f"Successfully tagged {tag}")
        printer._line(f"Built in {time.monotonic() - started:.1f}s: {result.executed} steps "
                      f"run, {result.cached} cached")
    print(image.id)
    return 0


def _size(n: int) -> str:
    from isolate.cli.images import _size as size

    return size(n)


def cmd_history(args: argparse.Namespace) -> int:
    from isolate.cli.images import _since
    from isolate.image.build import ImageState

    store = open_store(args)
    image = store.get(args.image)
    state = ImageState.from_image(store, image)
    sizes = [la.size for la in state.layers]
    rows: list[dict[str, Any]] = []
    layer_index = len(sizes) - 1
    for n, entry in enumerate(reversed(state.history)):
        empty = bool(entry.get("empty_layer"))
        size = 0
        if not empty and layer_index >= 0:
            size = sizes[layer_index]
            layer_index -= 1
        rows.append({
            "id": (image.id if args.no_trunc else image.short_id) if n == 0 else "<missing>",
            "created": str(entry.get("created") or ""),
            "created_by": str(entry.get("created_by") or ""),
            "size": size,
            "comment": str(entry.get("comment") or ""),
        })
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.quiet:
        for row in rows:
            print(row["id"])
        return 0
    header = ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")
    table: list[tuple[str, ...]] = [header]
    for row in rows:
        by = row["created_by"].replace("\n", " ")
        if not args.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        created = _since(row["created"]) if args.human else row["created"]
        shown = _size(row["size"]) if args.human else str(row["size"])
        table.append((row["id"], created, by, shown, row["comment"]))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_builder_prune(args: argparse.Namespace) -> int:
    from isolate.image.build import BuildCache

    store = open_store(args)
    report = BuildCache(store).prune(mounts=not args.keep_mounts)
    print(f"Deleted build cache: {report.entries} step(s), {report.mounts} cache mount(s)")
    print(f"Total reclaimed space: {_size(report.bytes_freed)}")
    return 0

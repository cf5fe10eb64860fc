"""Running a build plan: each step looked up in the cache or carried out, then the commit.

Owns the order of work (stages after the stages they need, steps in order), the cache
lookups and records, ``COPY``/``ADD`` layers written directly, ``WORKDIR`` directories,
and ``RUN`` steps handed to a :class:`StepRunner` -- a small interface of its own, so that the
runner (a container of the image so far: ``isolate.ContainerStepRunner``) can change without
this module changing. The mounts of a ``RUN`` (cache directories kept in the store, secrets,
binds from the context or another stage, tmpfs) are prepared here, host-side, and removed
after the step; secrets never reach a layer, the history or a cache key.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import posixpath
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from isolate import _record
from isolate.errors import ConfigError, ImageError
from isolate.image._disk import remove_tree
from isolate.image.build.cache import BuildCache
from isolate.image.build.context import BuildContext
from isolate.image.build.errors import (
    BuildCancelled,
    BuildError,
    DockerfileError,
    SourceLocation,
    StepFailed,
)
from isolate.image.build.instructions import parse_stages
from isolate.image.build.parser import parse
from isolate.image.build.plan import (
    DEFAULT_PATH,
    BuildOptions,
    BuildPlan,
    CopyPlan,
    MountPlan,
    RunPlan,
    StagePlan,
    Step,
    make_plan,
)
from isolate.image.build.state import ImageState, LayerRef
from isolate.image.config import Image
from isolate.image.oci import OCI_LAYER_GZIP
from isolate.image.reference import Reference
from isolate.image.store import Store

if TYPE_CHECKING:
    import concurrent.futures

    from isolate.image.build.files import LayerFiles, SourceItem
    from isolate.image.build.tree import ImageTree
    from isolate.image.users import ImageUser

# What only a step that runs needs (writing layers, reading image trees, downloads) is imported
# when a step runs: a build that the cache answers whole starts faster without it.

__all__ = [
    "BuildEvent",
    "BuildFinished",
    "BuildRequest",
    "BuildResult",
    "Builder",
    "RunMount",
    "RunOutcome",
    "RunRequest",
    "StepFinished",
    "StepOutput",
    "StepRunner",
    "StepStarted",
]

_TAIL = 4096


# -- the runner interface --------------------------------------------------------------------

@_record.record
class RunMount:
    """A mount of one RUN step, prepared on the host: ``kind`` ``bind`` (``source`` is a host
    path, ``readonly`` or not) or ``tmpfs`` (``size`` bytes, None for the default)."""

    kind: str
    target: str
    source: str | None = None
    readonly: bool = True
    size: int | None = None


@_record.record(eq=False)
class RunRequest:
    """What a RUN step runs: ``argv`` in a writable container of ``image`` (the state so far
    as an image value: its layer blobs are in ``store``, which has no record of it), as
    ``uid``/``gid`` with the supplementary ``groups`` and Docker's default capabilities, in
    ``workdir`` with exactly ``env`` (HOME and PATH already set as runc sets them), on
    ``network`` (``none``, ``host``, ``bridge`` or a user-defined network's name), with
    ``mounts``, named ``hostname``.
    ``cancel_fd`` (-1: none) turns readable when the build is stopped: the runner then kills
    the step and raises :class:`BuildCancelled`."""

    image: Image
    store: Store
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    uid: int
    gid: int
    workdir: str
    network: str
    mounts: tuple[RunMount, ...] = ()
    hostname: str = "buildkitsandbox"
    groups: tuple[int, ...] = ()
    cancel_fd: int = -1


@_record.record
class RunOutcome:
    """How a RUN step ended: its ``exit_code`` (``128 + N`` for signal N) and the directory
    holding its changes in overlay upper-dir form (valid until the runner's context ends)."""

    exit_code: int
    upper_dir: str


@runtime_checkable
class StepRunner(Protocol):
    """Runs the RUN steps of a build. One method::

        with runner.run(request, output) as outcome:
            ...  # outcome.upper_dir holds the step's changes until the block ends

    ``output`` is called with the step's stdout and stderr bytes (interleaved) as they come.
    Leaving the block removes the container and everything it made but the layer committed
    from ``upper_dir``. Raises what starting the container raises (typed isolate errors).
    """

    def run(self, request: RunRequest, output: Callable[[bytes], None]
            ) -> AbstractContextManager[RunOutcome]:
        """Run ``request``; see the class docstring."""
        ...


# -- progress events --------------------------------------------------------------------------

@_record.record(eq=False)
class StepStarted:
    """A step begins (``label``: ``[builder 2/5]`` or ``[2/5]``)."""

    step: Step
    label: str


@_record.record(eq=False)
class StepOutput:
    """Bytes a RUN step wrote to stdout/stderr (``label`` as its :class:`StepStarted`'s)."""

    step: Step
    data: bytes
    label: str = ""


@_record.record(eq=False)
class StepFinished:
    """A step ended: ``cached`` if its result came from the cache, after ``seconds``."""

    step: Step
    label: str
    cached: bool
    seconds: float


@_record.record(eq=False)
class BuildFinished:
    """The image is committed."""

    image: Image
    seconds: float


BuildEvent = StepStarted | StepOutput | StepFinished | BuildFinished


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@_record.record(eq=False)
class BuildRequest:
    """One build: a ``context`` directory or ``context_tar`` (a tar stream, unpacked into
    the store's temp space for the build), the Dockerfile (a path -- inside the tar for a tar
    context -- or its text; default ``Dockerfile`` in the context), tags and options."""

    context: str | None = None
    context_tar: IO[bytes] | None = None
    dockerfile: str | None = None
    dockerfile_text: str | bytes | None = None
    tags: tuple[str, ...] = _record.field(default=(), converter=_strings)
    options: BuildOptions = _record.field(factory=BuildOptions)


@_record.record(eq=False)
class BuildResult:
    """What a build made: the ``image``, the ``plan`` it followed, and how many steps came
    from the cache (``cached``) or were carried out (``executed``)."""

    image: Image
    plan: BuildPlan
    cached: int
    executed: int
    warnings: tuple[str, ...] = ()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _exit_code(status: int) -> int:
    return 128 - status if status < 0 else status


# -- the builder -----------------------------------------------------------------------------

class Builder:
    """Builds Dockerfiles into ``store``, running RUN steps with ``runner``.

    ``progress`` receives :data:`BuildEvent` values as the build goes, one call at a time
    (from the build's threads: stages that need nothing of each other are built at once).
    """

    def __init__(self, store: Store, runner: StepRunner, *,
                 progress: Callable[[Any], None] | None = None) -> None:
        self.store = store
        self.runner = runner
        self.progress = progress or (lambda _event: None)
        self.cache = BuildCache(store)

    # -- entry point ------------------------------------------------------------------------

    def build(self, request: BuildRequest) -> BuildResult:
        """Plan and carry out ``request``; return the committed image.

        Raises:
            DockerfileError: the Dockerfile, ignore file or an option is malformed.
            BuildError: a missing source, stage, user or base image, a cycle of stages.
            StepFailed: a RUN step exited non-zero (earlier steps stay cached).
            ImageError: a base image cannot be pulled, or the store failed.
            IsolateError: starting a RUN step's container failed.
        """
        started = time.monotonic()
        tags = [_reference(t) for t in request.tags]  # a bad name fails before any work
        # A context directory's file digests are remembered for its next build (an unpacked
        # tar is new every time).
        remember = request.context is not None and request.context_tar is None
        with self.store.using(), contextlib.ExitStack() as cleanup:
            if request.context_tar is not None:
                tmp = self._unpack(request.context_tar, cleanup)
                dockerfile = request.dockerfile
                if dockerfile is not None and not os.path.isabs(dockerfile):
                    dockerfile = os.path.join(tmp, dockerfile)
                request = _record.evolve(request, context=tmp, context_tar=None,
                                       dockerfile=dockerfile)
            ctx = self._context(request)
            if ctx is not None and remember:
                ctx.known = self.cache.context_digests(ctx.root)
            text, name = self._dockerfile(request, ctx)
            parsed = parse_stages(parse(text, name))
            pull = request.options.pull
            plan = make_plan(parsed, ctx, request.options,
                             lambda name, loc: self._resolve_image(name, loc, pull=pull),
                             self._read_config)
            if ctx is not None and remember and ctx.remembered() != ctx.known:
                self.cache.save_context_digests(ctx.root, ctx.remembered())
            run = _Run(self, plan, ctx, request.options)
            try:
                final = run.execute()
            finally:
                run.cancel.close()
            image = final.commit(self.store, tags)
        self.progress(BuildFinished(image, time.monotonic() - started))
        return BuildResult(image, plan, run.cached, run.executed,
                           (*parsed.dockerfile.warnings, *plan.warnings))

    def _unpack(self, stream: IO[bytes], cleanup: contextlib.ExitStack) -> str:
        """Unpack a context tar into the store's temp space (removed after the build)."""
        from isolate.fs import layers as fslayers

        tmp = self.store.tmp.name("context")
        os.mkdir(tmp, 0o700)
        cleanup.callback(remove_tree, tmp)
        try:
            fslayers.extract(stream, tmp, whiteouts="keep")  # type: ignore[arg-type]
        except ImageError as exc:
            raise BuildError(f"the build context tar cannot be unpacked: {exc}") from None
        return tmp

    def _context(self, request: BuildRequest) -> BuildContext | None:
        if request.context is None:
            return None
        dockerfile = request.dockerfile
        if dockerfile is None and request.dockerfile_text is None:
            dockerfile = os.path.join(request.context, "Dockerfile")
        return BuildContext.open(request.context,
                                 os.path.abspath(dockerfile) if dockerfile else None)

    def _dockerfile(self, request: BuildRequest, ctx: BuildContext | None
                    ) -> tuple[str | bytes, str]:
        if request.dockerfile_text is not None:
            return request.dockerfile_text, request.dockerfile or "Dockerfile"
        path = request.dockerfile
        if path is None:
            if ctx is None:
                raise BuildError("give a context directory or a Dockerfile")
            path = os.path.join(ctx.root, "Dockerfile")
        try:
            with open(path, "rb") as f:
                return f.read(), os.path.basename(path)
        except OSError as exc:
            raise BuildError(f"cannot read the Dockerfile {path}: {exc.strerror}") from exc

    def _resolve_image(self, name: str, location: SourceLocation | None, *, pull: bool
                       ) -> Image:
        try:
            ref = Reference.parse(name)
        except ConfigError as exc:
            raise DockerfileError(f"invalid image reference {name!r}: {exc}", location
                                  ) from None
        if not pull:
            try:
                return self.store.get(ref)
            except ImageError:
                pass
        try:
            return self.store.pull(ref)
        except ImageError as exc:
            raise BuildError(f"base image {name}: {exc}", location) from None

    def _read_config(self, image: Image) -> dict[str, Any]:
        return dict(ImageState.from_image(self.store, image).config)


def _reference(tag: str) -> Reference:
    try:
        return Reference.parse(tag)
    except ConfigError as exc:
        raise DockerfileError(f"invalid tag {tag!r}: {exc}") from None


class Cancel:
    """A build's stop signal. :meth:`fileno` is an eventfd that turns readable, and stays so,
    once :meth:`set` was called: a step runner waits on it beside its step's output."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._fd = -1

    def is_set(self) -> bool:
        """Whether the build was stopped."""
        return self._set

    def set(self) -> None:
        """Stop the build: every step waiting on :meth:`fileno` sees it."""
        with self._lock:
            self._set = True
            if self._fd >= 0:
                os.eventfd_write(self._fd, 1)

    def fileno(self) -> int:
        """The eventfd (made on first use; closed by :meth:`close`)."""
        with self._lock:
            if self._fd < 0:
                self._fd = os.eventfd(1 if self._set else 0, os.EFD_CLOEXEC)
            return self._fd

    def close(self) -> None:
        """Close the eventfd (once no step runs any more)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _settle(running: Iterable[concurrent.futures.Future[Any]]) -> None:
    """Wait for every one of ``running`` to end, whatever it raises, also through further
    interrupts (its step is being killed: it ends soon)."""
    import concurrent.futures

    pending = set(running)
    while pending:
        try:
            _done, pending = concurrent.futures.wait(pending)
        except KeyboardInterrupt:
            continue


class _Run:
    """The state of one build while it runs."""

    def __init__(self, builder: Builder, plan: BuildPlan, ctx: BuildContext | None,
                 options: BuildOptions) -> None:
        self.b = builder
        self.store = builder.store
        self.plan = plan
        self.ctx = ctx
        self.options = options
        self.results: dict[int, ImageState] = {}
        self.images: dict[str, Image] = {}
        self.cached = 0
        self.executed = 0
        self.secrets = {s.id: s for s in options.secrets}
        self.lock = threading.Lock()
        self.cancel = Cancel()

    def label(self, stage: StagePlan, step: Step) -> str:
        if len(self.plan.stages) > 1:
            return f"[{stage.label} {step.number}/{step.total}]"
        return f"[{step.number}/{step.total}]"

    def emit(self, event: BuildEvent) -> None:
        """Hand ``event`` to the builder's progress callback, one call at a time."""
        with self.lock:
            self.b.progress(event)

    def execute(self) -> ImageState:
        """Build every stage of the plan, each once its needs are built; stages that need
        nothing of each other at the same time, in threads (as BuildKit does). A failing
        stage cancels the others (their running steps are killed), and its error is raised
        once they stopped; so does an interrupt (KeyboardInterrupt) of the calling thread.
        A stage that is alone to run runs in the calling thread."""
        waiting = {sp.index: sp for sp in self.plan.stages}
        running: dict[concurrent.futures.Future[ImageState], int] = {}
        first: BaseException | None = None
        pool: concurrent.futures.ThreadPoolExecutor | None = None
        try:
            while waiting or running:
                ready = [sp for sp in waiting.values() if sp.needs <= self.results.keys()]
                if first is None and len(ready) == 1 and not running:
                    sp = waiting.pop(ready[0].index)
                    self.results[sp.index] = self.stage(sp)
                    continue
                if first is None:
                    for sp in ready:
                        del waiting[sp.index]
                        if pool is None:
                            import concurrent.futures  # (only where stages run at once)

                            pool = concurrent.futures.ThreadPoolExecutor(
                                len(self.plan.stages), thread_name_prefix="isolate-build")
                        running[pool.submit(self.stage, sp)] = sp.index
                if not running:
                    break  # cancelled: what waits never starts
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        self.results[index] = future.result()
                    elif first is None:
                        first = exc
                        self.cancel.set()
                    elif not isinstance(exc, BuildCancelled):
                        from isolate.cgroups.cgroup import add_note

                        add_note(first, f"another stage failed too: {exc}")
        except BaseException:  # an interrupt: stop the stages, then let it go on
            self.cancel.set()
            _settle(running)
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        if first is not None:
            raise first
        return self.results[self.plan.target]

    def stage(self, sp: StagePlan) -> ImageState:
        first = sp.steps[0]
        if sp.base_kind == "image":
            assert sp.base_image is not None
            state = ImageState.from_image(self.store, sp.base_image)
        elif sp.base_kind == "stage":
            assert sp.base_stage is not None
            state = self.results[sp.base_stage]
        else:
            state = ImageState(sp.platform)
        state = _record.evolve(state, config=first.config,
                             author=first.author if first.author is not None else state.author)
        label = self.label(sp, first)
        self.emit(StepStarted(first, label))
        self.emit(StepFinished(first, label, True, 0.0))
        for step in sp.steps[1:]:
            if self.cancel.is_set():
                raise BuildCancelled("the build was stopped", step.location)
            label = self.label(sp, step)
            began = time.monotonic()
            self.emit(StepStarted(step, label))
            if step.kind == "config":
                history = {"created_by": step.created_by} if step.created_by else None
                state = state.then(config=step.config, history=history, author=step.author)
                self.emit(StepFinished(step, label, False, time.monotonic() - began))
                continue
            cached = None if self.options.no_cache else self.b.cache.get(step.key)
            if cached is not None:
                state = cached
                with self.lock:
                    self.cached += 1
                self.emit(StepFinished(step, label, True, time.monotonic() - began))
                continue
            state = self.step(step, state, label)
            self.b.cache.put(step.key, state)
            with self.lock:
                self.executed += 1
            self.emit(StepFinished(step, label, False, time.monotonic() - began))
        return state

    # -- helpers ------------------------------------------------------------------------

    def image(self, state: ImageState) -> Image:
        """``state`` as an image value, so that its layers can be read and run; not recorded
        in the store (the build's result is its only image, as BuildKit's)."""
        digest = hashlib.sha256(state.config_blob()).hexdigest()
        known = self.images.get(digest)
        if known is None:
            known = state.as_image()
            self.images[digest] = known
        return known

    def tree(self, state: ImageState) -> ImageTree:
        from isolate.image.build.tree import ImageTree

        if not state.layers:
            return ImageTree([])
        return ImageTree(self.store.layer_dirs(self.image(state)))

    def source_tree(self, plan: CopyPlan | MountPlan) -> ImageTree:
        from isolate.image.build.tree import ImageTree

        if plan.from_stage is not None:
            return self.tree(self.results[plan.from_stage])
        assert plan.from_image is not None
        return ImageTree(self.store.layer_dirs(plan.from_image))

    def history(self, step: Step) -> dict[str, Any]:
        return {"created_by": step.created_by or step.text, "comment": "isolate build"}

    def step(self, step: Step, state: ImageState, label: str) -> ImageState:
        if step.kind == "workdir":
            return self.workdir(step, state)
        if step.kind == "copy":
            return self.copy(step, state)
        return self.run(step, state, label)

    # -- WORKDIR ------------------------------------------------------------------------

    def workdir(self, step: Step, state: ImageState) -> ImageState:
        from isolate.image.build.files import LayerFiles
        from isolate.image.build.layer import LayerWriter

        assert step.workdir is not None
        tree = self.tree(state)
        if tree.lookup(step.workdir) is not None:
            return state.then(config=step.config, history=self.history(step))
        owner = (0, 0)
        if step.user:
            who = _user(step.user, tree, step.location)
            owner = (who.uid, who.gid)
        with LayerWriter(self.store) as writer:
            files = LayerFiles(writer, tree, new_owner=owner, location=step.location,
                               what="WORKDIR")
            real = files.resolve(step.workdir)
            files.parents(real)
            files.ensure_dir(real)
            layer = writer.finish()
        return state.then(config=step.config, history=self.history(step), layer=layer,
                          created=_now())

    # -- COPY / ADD ---------------------------------------------------------------------

    def copy(self, step: Step, state: ImageState) -> ImageState:
        from isolate.image.build.files import LayerFiles, SourceItem, fetch_url, resolve_chown
        from isolate.image.build.layer import LayerWriter

        cp = step.copy
        assert cp is not None
        loc = step.location
        tree = self.tree(state)
        owner = resolve_chown(cp.chown, tree, loc, f"{cp.keyword} --chown")
        src_tree = self.source_tree(cp) if (cp.from_stage is not None
                                            or cp.from_image is not None) else None
        with LayerWriter(self.store) as writer, contextlib.ExitStack() as cleanup:
            files = LayerFiles(writer, tree, new_owner=owner or (0, 0), location=loc,
                               what=cp.keyword)
            dest = files.resolve(cp.dest)
            for source in cp.sources:
                if source.kind == "context":
                    assert self.ctx is not None
                    entry = self.ctx.entry(source.path)
                    if entry is None:
                        raise BuildError(f"{cp.keyword}: {source.path} vanished from the "
                                         "build context", loc)
                    item = SourceItem.from_context(self.ctx, entry)
                    children: Iterator[tuple[str, SourceItem]] = (
                        (e.path if entry.path == "." else e.path[len(entry.path) + 1:],
                         SourceItem.from_context(self.ctx, e))
                        for e in list(self.ctx.walk(entry.path))[1:])
                    if (cp.keyword == "ADD" and item.kind == "file" and cp.unpack is not False
                            and self._is_archive(item)):
                        files.parents(dest)
                        files.ensure_dir(dest)
                        assert item.opener is not None
                        with item.opener() as f:
                            files.archive(dest, f, source=source.path)
                        continue
                    self.place(files, cp, dest, source.name, item, children,
                               owner if owner is not None else (0, 0))
                elif source.kind in ("stage", "image"):
                    assert src_tree is not None
                    self.copy_from_tree(files, cp, dest, source.path, src_tree, owner, loc)
                elif source.kind == "inline":
                    target = posixpath.join(dest, source.name) if cp.dest_is_dir else dest
                    files.parents(target)
                    files.data(target, (source.data or "").encode(),
                               mode=cp.chmod if cp.chmod is not None else 0o644,
                               owner=owner or (0, 0))
                else:  # url
                    tmp = self.store.tmp.name("download")
                    cleanup.callback(_unlink, tmp)
                    with open(tmp, "xb") as out:
                        _digest, size, modified = fetch_url(source.path, out,
                                                            checksum=cp.checksum, location=loc)
                    target = dest
                    if cp.dest_is_dir or files.is_dir(dest):
                        target = posixpath.join(dest, source.name)
                    files.parents(target)
                    item = SourceItem("file", stat.S_IFREG | 0o600, 0, 0,
                                      modified if modified is not None else int(time.time()),
                                      size, opener=_opener(tmp))
                    if cp.unpack:
                        files.ensure_dir(dest)
                        with open(tmp, "rb") as f:
                            files.archive(dest, f, source=source.path)
                    else:
                        files.item(target, item, owner=owner or (0, 0), chmod=cp.chmod)
            layer = writer.finish()
        return state.then(config=step.config, history=self.history(step), layer=layer,
                          created=_now())

    @staticmethod
    def _is_archive(item: SourceItem) -> bool:
        from isolate.image.build.files import is_archive

        assert item.opener is not None
        with item.opener() as f:
            return is_archive(f.read(512))

    def place(self, files: LayerFiles, cp: CopyPlan, dest: str, name: str, item: SourceItem,
              children: Iterator[tuple[str, SourceItem]], owner: tuple[int, int] | None
              ) -> None:
        """Copy one source (``item``, and ``children`` if a directory) to ``dest``."""
        if item.kind == "dir":
            files.parents(dest)
            files.ensure_dir(dest)
            files.tree_copy(dest, children, owner=owner, chmod=cp.chmod)
            return
        target = dest
        if cp.dest_is_dir or files.is_dir(dest):
            target = files.place(dest, name, is_dir=False)
        files.parents(target)
        files.item(target, item, owner=owner, chmod=cp.chmod)

    def copy_from_tree(self, files: LayerFiles, cp: CopyPlan, dest: str, path: str,
                       src: ImageTree, owner: tuple[int, int] | None,
                       loc: SourceLocation | None) -> None:
        from isolate.image.build.context import glob_regex, has_glob
        from isolate.image.build.files import SourceItem

        matches: list[tuple[str, str]] = []
        if has_glob(path):
            parts = [p for p in path.split("/") if p]
            current = ["/"]
            for part in parts:
                regex = glob_regex(part) if has_glob(part) else None
                nxt = []
                for base in current:
                    for child_name in sorted(src.children(base)):
                        if (regex.fullmatch(child_name) if regex else child_name == part):
                            nxt.append(posixpath.join(base, child_name))
                current = nxt
            matches = [(posixpath.basename(m), m) for m in current]
            if not matches:
                raise BuildError(f"{cp.keyword} --from: no source files were specified (no "
                                 f"match for {path!r})", loc)
        else:
            matches = [(posixpath.basename(path.rstrip("/")) or "/", path)]
        for name, spath in matches:
            entry = src.lookup(spath)
            if entry is None:
                raise BuildError(f"{cp.keyword} --from: {spath} not found in the source "
                                 "image", loc)
            item = SourceItem.from_tree(entry)
            children = ((rel, SourceItem.from_tree(e)) for rel, e in src.walk(entry.path)) \
                if item.kind == "dir" else iter(())
            self.place(files, cp, dest, name, item, children, owner)

    # -- RUN ----------------------------------------------------------------------------

    def run(self, step: Step, state: ImageState, label: str) -> ImageState:
        rp = step.run
        assert rp is not None
        loc = step.location
        image = self.image(state)
        tree = self.tree(state)
        who = _user(rp.user, tree, loc)
        env = dict(rp.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOME", who.home)  # as runc sets it
        tail = bytearray()

        def output(data: bytes) -> None:
            tail.extend(data)
            del tail[:-_TAIL]
            self.emit(StepOutput(step, data, label))

        with contextlib.ExitStack() as stack:
            mounts = self.mounts(rp, tree, env, stack, loc)
            # The primary group first, as Docker and podman list the step's groups.
            groups = (who.gid, *(g for g in who.additional_gids if g != who.gid))
            request = RunRequest(image, self.store, rp.argv, tuple(env.items()), who.uid,
                                 who.gid, rp.workdir, rp.network, tuple(mounts),
                                 groups=groups, cancel_fd=self.cancel.fileno())
            with self.b.runner.run(request, output) as outcome:
                if outcome.exit_code != 0:
                    raise StepFailed(" ".join(rp.argv), outcome.exit_code, loc,
                                     tail.decode("utf-8", "replace"))
                layer = self.commit_upper(outcome.upper_dir)
        return state.then(config=step.config, history=self.history(step), layer=layer,
                          created=_now())

    def commit_upper(self, upper: str) -> LayerRef | None:
        """The changes in an overlay upper dir as a stored layer; None if there are none.
        (Rootless, the store writes it as the step's user namespace sees its owners.)"""
        if not os.listdir(upper):
            return None
        layer = self.store.put_layer(upper, changes=True, compression="gzip")
        return LayerRef(layer.diff_id, layer.digest, layer.size, layer.media_type or
                        OCI_LAYER_GZIP)

    def mounts(self, rp: RunPlan, tree: ImageTree, env: dict[str, str],
               stack: contextlib.ExitStack, loc: SourceLocation | None) -> list[RunMount]:
        out: list[RunMount] = []
        private: str | None = None

        def scratch() -> str:
            nonlocal private
            if private is None:
                private = self.store.tmp.name("run-mounts")
                os.mkdir(private, 0o700)
                stack.callback(remove_tree, private)
            return private

        if rp.network == "host":
            # The host's resolver, as BuildKit gives it; /etc/hosts is the runner's (localhost
            # and the step's hostname, whatever the network).
            entry = tree.lookup("/etc/resolv.conf", follow=False)
            if os.path.isfile("/etc/resolv.conf") and (entry is None
                                                       or stat.S_ISREG(entry.st.st_mode)):
                out.append(RunMount("bind", "/etc/resolv.conf", "/etc/resolv.conf", True))
        if rp.script is not None:
            name, text = rp.script
            pipes = os.path.join(scratch(), "pipes")
            os.mkdir(pipes, 0o755)
            with open(os.path.join(pipes, name), "w", encoding="utf-8") as script:
                script.write(text)
            os.chmod(os.path.join(pipes, name), 0o755)
            out.append(RunMount("bind", "/dev/pipes", pipes, True))
        for n, m in enumerate(rp.mounts):
            if m.kind == "tmpfs":
                out.append(RunMount("tmpfs", m.target, size=m.size, readonly=False))
            elif m.kind == "cache":
                path = self.b.cache.mount_dir(m.cache_id, uid=m.uid, gid=m.gid,
                                              mode=m.mode if m.mode is not None else 0o755)
                if m.sharing != "shared":
                    stack.enter_context(self.b.cache.mount_lock(m.cache_id).hold())
                out.append(RunMount("bind", m.target, path, m.readonly))
            elif m.kind == "secret":
                secret = self.secrets.get(m.secret_id)
                if secret is None:
                    if m.required:
                        raise BuildError(f"secret {m.secret_id!r} is required but was not "
                                         "given (--secret id=...)", loc)
                    continue
                value = secret.read()
                if m.env:
                    env[m.env] = value.decode("utf-8", "surrogateescape")
                if m.target:
                    path = os.path.join(scratch(), f"secret-{n}")
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(value)
                    os.chown(path, m.uid, m.gid)
                    os.chmod(path, m.mode if m.mode is not None else 0o400)
                    out.append(RunMount("bind", m.target, path, True))
            else:  # bind
                path = os.path.join(scratch(), f"bind-{n}")
                self.materialize(m, path, loc)
                out.append(RunMount("bind", m.target, path, m.readonly))
        return out

    def materialize(self, m: MountPlan, path: str, loc: SourceLocation | None) -> None:
        """A private copy of what a bind mount shows (so a writable one changes nothing)."""
        from isolate.image.build.files import SourceItem

        if m.from_stage is None and m.from_image is None:
            assert self.ctx is not None
            entry = self.ctx.entry(m.source)
            if entry is None:
                raise BuildError(f"RUN --mount: {m.source} is not in the build context", loc)
            if entry.kind != "dir":
                _copy_item(SourceItem.from_context(self.ctx, entry), path)
                return
            os.mkdir(path, 0o755)
            for e in list(self.ctx.walk(entry.path))[1:]:
                rel = e.path if entry.path == "." else e.path[len(entry.path) + 1:]
                _copy_item(SourceItem.from_context(self.ctx, e), os.path.join(path, rel))
            return
        src = self.source_tree(m)
        found = src.lookup(m.source)
        if found is None:
            raise BuildError(f"RUN --mount: {m.source} not found in the mounted image", loc)
        item = SourceItem.from_tree(found)
        if item.kind != "dir":
            _copy_item(item, path)
            return
        os.mkdir(path, 0o755)
        for rel, sub in src.walk(found.path):
            _copy_item(SourceItem.from_tree(sub), os.path.join(path, rel))


def _copy_item(item: SourceItem, path: str) -> None:
    if item.kind == "dir":
        os.mkdir(path, stat.S_IMODE(item.mode) | 0o700)
    elif item.kind == "file":
        assert item.opener is not None
        with item.opener() as src, open(path, "xb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(path, stat.S_IMODE(item.mode))
    elif item.kind == "symlink":
        os.symlink(item.link or "", path)


def _opener(path: str) -> Callable[[], IO[bytes]]:
    def open_it() -> IO[bytes]:
        return open(path, "rb")
    return open_it


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _user(spec: str, tree: ImageTree, location: SourceLocation | None) -> ImageUser:
    """USER as Docker reads it: :func:`isolate.image.users.resolve_user` (runc's rules, on
    the image's own passwd and group files only), its errors with the instruction's
    location."""
    from isolate.image.users import resolve_user

    try:
        return resolve_user(spec, (), tree.lowers)
    except ConfigError as exc:
        raise BuildError(f"USER {spec}: {exc}", location) from None

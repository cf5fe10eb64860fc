"""Build steps in containers: the :class:`~isolate.image.build.StepRunner` of ``isolate build``.

Owns running one ``RUN`` of a build the way ``docker build`` does: a container of the image
so far, made by the container preset (:mod:`isolate.container.preset`: Docker's capabilities
and seccomp profile, no no_new_privs, Docker's masked paths, ``nodev`` everywhere) and the one
compiler (:func:`isolate.runtime.container_plan`), spawned straight from this process -- no
supervisor, no state dir, no log: a step is over when its command is. Its root is an overlay
whose upper dir is the step's change set; ``/tmp`` is the image's, so what a step leaves there
stays in its layer. Must not decide what a step runs (the executor does) or write layers.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from isolate import _record
from isolate.errors import IsolateOSError
from isolate.image import Store
from isolate.image._disk import remove_tree
from isolate.image.build import (
    BuildCancelled,
    Builder,
    BuildOptions,
    BuildRequest,
    BuildResult,
    RunOutcome,
    RunRequest,
)

if TYPE_CHECKING:
    from isolate.runtime import NamespaceSpec, RuntimeConfig

__all__ = ["ContainerStepRunner", "build"]

_NOT_FOUND = (2, 20)  # ENOENT, ENOTDIR: Docker's 127


class ContainerStepRunner:
    """Runs each RUN step in a fresh container of the step's image, as ``docker run`` would
    make it (see :mod:`isolate.container.preset`), spawned without a supervisor.

    What the step gets: the image's root (its layers, a layer of the mount points it lacks,
    an upper dir of its own), the request's user with its supplementary groups, Docker's
    14 capabilities and seccomp profile (fitted to them), no no_new_privs, Docker's masked
    and read-only ``/proc`` paths, ``/dev`` with the standard nodes, a new pid, mount, uts,
    ipc and cgroup namespace, a network namespace with loopback only (``none``) or the
    host's (``host``) or one attached to a bridge network (``bridge`` or a network's name:
    an endpoint of :mod:`isolate.net` -- veth, address, outbound NAT -- held for the step
    only), ``/etc/hosts`` naming ``localhost`` and the step's hostname (its address on a
    bridge; the host's own file with ``host``, bound by the executor), on a bridge the
    network's ``/etc/resolv.conf``, and the step's mounts. As an ordinary user the container
    also gets a user namespace (see :func:`isolate.namespaces.rootless_maps`, as a rootless
    container's); on a bridge network that user namespace is made inside the user's rootless
    netns's (:class:`isolate.container.netdriver.RootlessNamespaces`), as podman does.

    ``network_host``: the network namespace that plays the host for bridge networks (a path,
    fd or :class:`isolate.net.NetNamespace`; None: ``$ISOLATE_NETWORK_NS``, else this
    process's own), as ``Sandbox(network_host=)``.
    """

    def __init__(self, *, network_host: Any = None) -> None:
        self.network_host = network_host

    @contextlib.contextmanager
    def run(self, request: RunRequest, output: Callable[[bytes], None]
            ) -> Iterator[RunOutcome]:
        """Run ``request`` to its end, streaming its output; yield the outcome while the
        upper dir still exists, remove everything the step made when the block ends.

        Raises:
            IsolateError: the container could not be made (not: the command failed -- that
                is the outcome's exit code; a command that cannot be executed is 126/127).
            BuildCancelled: the request's ``cancel_fd`` turned readable (the step is killed).
            UnsupportedError: rootless, and the step's user cannot be mapped; nft, pasta or
                slirp4netns is missing (a bridge network of an ordinary user).
            ConfigError: no such network.
            NetworkError: the step's endpoint could not be made or removed.
        """
        store = request.store
        scratch = store.tmp.name("run")
        os.mkdir(scratch, 0o700)
        try:
            with contextlib.ExitStack() as stack:
                upper = os.path.join(scratch, "upper")
                network = self._network(request, stack)
                rc, root = self._prepare(request, scratch, network)
                yield RunOutcome(_run(rc, root, output, request.cancel_fd), upper)
        finally:
            remove_tree(scratch)

    def _network(self, request: RunRequest, stack: contextlib.ExitStack) -> _Network | None:
        """A network namespace attached to the step's bridge network (None for ``none`` and
        ``host``), released -- veth, address lease, rules -- when ``stack`` closes, whatever
        ends the step. Were this process killed first, the endpoint's owner (this process)
        is dead, and the next change of the store's networks (or ``network prune``) removes
        it."""
        if request.network in ("none", "host"):
            return None
        from isolate.container.netdriver import RootlessNamespaces, attach_namespace
        from isolate.net import NetNamespace
        from isolate.runtime import NamespaceSpec

        uid_map, gid_map = _rootless_maps(request)
        # An ordinary user's step: its user and network namespaces are made inside the
        # rootless netns's user namespace (so that the bridge's veth can be moved in), and the
        # step joins both; root's step gets a network namespace of its own.
        made = RootlessNamespaces(request.network, store_root=request.store.root,
                                  host=self.network_host, uid_map=uid_map, gid_map=gid_map)
        rootless: RootlessNamespaces | None = made
        user: NamespaceSpec | None = None
        if made.active:
            user_fd, net_fd = made.take()
            stack.callback(os.close, user_fd)
            stack.callback(os.close, net_fd)
            user = NamespaceSpec("user", fd=user_fd)
        else:
            made.close()
            rootless = None
            ns = stack.enter_context(NetNamespace.create())
            user_fd, net_fd = -1, ns.fileno()
        attachment = attach_namespace(net_fd, request.network,
                                      store_root=request.store.root,
                                      hostname=request.hostname, host=self.network_host,
                                      userns=user_fd, rootless=rootless)
        stack.push(_releasing(attachment.release))
        return _Network(NamespaceSpec("net", fd=net_fd), attachment.hosts,
                        attachment.resolv_conf, user)

    def _prepare(self, request: RunRequest, scratch: str, network: _Network | None
                 ) -> tuple[RuntimeConfig, Any]:
        """The step's runtime config and root op; the upper, work and mount-point dirs and
        the etc files made in ``scratch``."""
        from isolate import _plan, _sys
        from isolate.container.config import BindMount, ContainerConfig, TmpfsMount
        from isolate.container.preset import Resolved, runtime_config
        from isolate.container.users import ImageUser

        store, image = request.store, request.image
        lowers = store.layer_dirs(image)
        upper, work, top = (os.path.join(scratch, d) for d in ("upper", "work", "mountpoints"))
        for d in (upper, work, top):
            os.mkdir(d, 0o755)
        mounts: list[Any] = []
        targets = {m.target for m in request.mounts}
        for m in request.mounts:
            if m.kind == "tmpfs":
                mounts.append(TmpfsMount(m.target, size=m.size, noexec=False))
            else:
                mounts.append(BindMount(m.source or "", m.target, readonly=m.readonly))
        etc: dict[str, str] = {}
        files = {"/etc/hosts": f"127.0.0.1\tlocalhost {request.hostname}\n"
                               "::1\tlocalhost ip6-localhost ip6-loopback\n"}
        if network is not None:
            files = {"/etc/hosts": network.hosts, "/etc/resolv.conf": network.resolv_conf}
        for target, text in files.items():
            if target in targets or not _is_file_or_missing(lowers, target):
                continue
            # As BuildKit's: the step's own name resolves, whatever the image's file says.
            path = os.path.join(scratch, os.path.basename(target))
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            etc[target] = path
        cfg = ContainerConfig(image.id, command=request.argv, entrypoint=(),
                              workdir=request.workdir, network=request.network,
                              mounts=mounts)
        uid_map, gid_map = _rootless_maps(request)
        user = ImageUser(request.uid, request.gid, request.groups,
                         dict(request.env).get("HOME", "/"))
        resolved = Resolved(command=request.argv, user=user, hostname=request.hostname,
                            etc_files=etc, network="host" if request.network == "host"
                            else network.namespace if network is not None else None,
                            uid_map=uid_map, gid_map=gid_map,
                            user_namespace=network.user_namespace if network is not None
                            else None)
        rc = runtime_config(cfg, image.config, resolved)
        # The executor's environment, exactly (it holds the image's, the build args, PATH and
        # HOME); the preset would add HOSTNAME, which a build step does not get.
        rc = _record.evolve(rc, process=_record.evolve(rc.process, env=request.env))
        _make_mountpoints(top, lowers, rc, targets)
        # The step's upper dir is read into a layer (synced by the store) and thrown away:
        # its own unmount need not sync the store's filesystem.
        root = _plan.overlay([*lowers, top], upper=upper, work=work, slot=0,
                             options=(("userxattr",) if uid_map else ())
                             + _sys.overlay_volatile(),
                             note=f"mount the root of a build step ({image.short_id})")
        return rc, root


@_record.record
class _Network:
    """A step's bridge network: the namespace to join, its hosts and resolv.conf text."""

    namespace: NamespaceSpec
    hosts: str
    resolv_conf: str
    #: An ordinary user's step: the user namespace that owns ``namespace``, to join.
    user_namespace: NamespaceSpec | None = None


def _releasing(release: Callable[[], None]) -> Callable[..., bool]:
    """An exit callback that calls ``release``; a failure of it while another error ends
    the step becomes a note on that error (the step's own error is the one to see)."""
    def exit_(exc_type: object, exc: BaseException | None, tb: object) -> bool:
        try:
            release()
        except Exception as failed:
            if exc is None:
                raise
            from isolate.cgroups.cgroup import add_note

            add_note(exc, f"releasing the step's network endpoint also failed: {failed}")
        return False
    return exit_


def _rootless_maps(request: RunRequest) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The id maps of the step's user namespace: none as root; else the rootless maps
    (:func:`isolate.namespaces.rootless_maps`), which must map the step's user.

    Raises:
        UnsupportedError: the step's uid or gid is not mapped (the message says how to get a
            range).
    """
    if os.geteuid() == 0:
        return (), ()
    from isolate.namespaces import rootless_maps

    maps = rootless_maps()
    maps.check(request.uid, request.gid, f"a RUN step of image {request.image.short_id}")
    return maps.uid_map, maps.gid_map


def _is_file_or_missing(lowers: Sequence[str], path: str) -> bool:
    from isolate.fs import inroot

    found = inroot.lookup(list(lowers), path, follow=False)
    return found is None or stat.S_ISREG(found.mode)


def _make_mountpoints(top: str, lowers: Sequence[str], rc: RuntimeConfig,
                      targets: set[str]) -> None:
    """Make, in the mount-point layer ``top``, each mount point the image lacks (and the
    working dir), so that none of them lands in the step's upper dir -- its layer. A path
    through something that is not a directory in the image (a symlink) is left alone: the
    container makes it, as Docker's runtime would."""
    from isolate._image_root import _make_mountpoint
    from isolate.fs import inroot
    from isolate.runtime import mountpoints

    wanted = [(p, f) for p, f in mountpoints(rc) if p != "/tmp" or "/tmp" in targets]
    if rc.process.cwd != "/":
        wanted.append((rc.process.cwd, False))
    for path, is_file in wanted:
        parts = [p for p in path.split("/") if p]
        for i in range(len(parts)):
            found = inroot.lookup(list(lowers), "/" + "/".join(parts[:i + 1]), follow=False)
            if found is None:
                _make_mountpoint(top, path, is_file, lowers)
                break
            if not stat.S_ISDIR(found.mode):
                break


def _run(rc: RuntimeConfig, root: Any, output: Callable[[bytes], None], cancel_fd: int
         ) -> int:
    """Spawn the container of ``rc`` (root op ``root``), stream its stdout and stderr (one
    pipe, interleaved as written) to ``output``, and return its exit code (``128 + N`` for
    signal N; 126/127 when the command cannot be executed). When ``cancel_fd`` turns
    readable, the container is killed and :class:`BuildCancelled` raised."""
    from isolate import lowlevel
    from isolate.runtime import container_plan

    fds: list[int] = []
    try:
        parent = os.pidfd_open(os.getpid())
        fds.append(parent)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        fds.append(null)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        fds += [read_end, write_end]
        # It dies with this process (a parent-death signal checked against our pidfd), and
        # with it every process of its pid namespace.
        cp = container_plan(rc, root=root, fds=((null, 0), (write_end, 1), (write_end, 2)),
                            parent_pidfd=parent)
        try:
            child = lowlevel.spawn(cp.plan,
                                   parent_step=cp.parent_step if cp.needs_parent else None)
        except IsolateOSError as exc:
            if exc.step != "exec":
                raise
            output(f"{rc.process.args[0]}: {exc}\n".encode())
            return 127 if exc.errno in _NOT_FOUND else 126
        with child:
            os.close(write_end)
            fds.remove(write_end)
            try:
                _stream(child, read_end, output, cancel_fd)
                status = child.wait()
            except BaseException:
                child.send_signal(signal.SIGKILL)
                child.wait()
                raise
        return 128 - status if status < 0 else status
    finally:
        for fd in fds:
            os.close(fd)


def _stream(child: Any, read_end: int, output: Callable[[bytes], None], cancel_fd: int
            ) -> None:
    """Pass what ``read_end`` gives to ``output`` until the pipe is closed and the child has
    exited; raise :class:`BuildCancelled` once ``cancel_fd`` is readable."""
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    poller.register(child.fileno(), select.POLLIN)
    if cancel_fd >= 0:
        poller.register(cancel_fd, select.POLLIN)
    open_ends = {read_end, child.fileno()}
    while open_ends:
        for fd, _events in poller.poll():
            if fd == cancel_fd:
                raise BuildCancelled("the build was stopped while this step ran")
            if fd == read_end:
                chunk = os.read(read_end, 1 << 16)
                if chunk:
                    output(chunk)
                    continue
            poller.unregister(fd)
            open_ends.discard(fd)


def build(context: str | os.PathLike[str] | None = ".", *, tags: Sequence[str] = (),
          dockerfile: str | os.PathLike[str] | None = None,
          dockerfile_text: str | bytes | None = None, store: Store | None = None,
          progress: Callable[[Any], None] | None = None,
          build_args: Mapping[str, str] | None = None, **options: Any) -> BuildResult:
    """Build a Dockerfile like ``docker build``: ``isolate.build(".", tags=["app:1"])``.

    ``options`` are :class:`isolate.image.build.BuildOptions` fields (``target``,
    ``labels``, ``no_cache``, ``pull``, ``network``, ``platform``, ``secrets``). RUN steps
    run in containers (:class:`ContainerStepRunner`).

    Raises:
        DockerfileError, BuildError, StepFailed, ImageError: as
            :meth:`isolate.image.build.Builder.build`.
    """
    builder = Builder(store if store is not None else Store(), ContainerStepRunner(),
                      progress=progress)
    opts = BuildOptions(build_args=dict(build_args or {}), **options)
    request = BuildRequest(context=os.fspath(context) if context is not None else None,
                           dockerfile=os.fspath(dockerfile) if dockerfile is not None else None,
                           dockerfile_text=dockerfile_text, tags=tuple(tags), options=opts)
    return builder.build(request)

"""``isolate login|logout``: registry credentials, stored where the Docker CLI keeps them.

Thin adapters over :func:`isolate.image.login` / :func:`isolate.image.logout`. Passwords come
from stdin (``--password-stdin``) or a prompt without echo; there is deliberately no password
option, since a command line is visible to every user of the machine (``/proc/PID/cmdline``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

# docker login's status when the registry refuses the credentials.
EXIT_LOGIN_FAILED = 1


class _LoginInputError(Exception):
    """Cannot get a user name or password (no terminal to ask on): a usage error."""


def _read_username(args: argparse.Namespace) -> str:
    if args.username:
        return str(args.username)
    if args.password_stdin:
        raise _LoginInputError("--password-stdin needs --username")
    if not sys.stdin.isatty():
        raise _LoginInputError("no terminal to ask for a user name on: give --username")
    return input("Username: ").strip()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        # As docker login: the whole of stdin, less its trailing line end.
        return sys.stdin.read().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise _LoginInputError("no terminal to ask for a password on: use --password-stdin")
    import getpass  # (and termios) only when asking

    return getpass.getpass("Password: ")


def cmd_login(args: argparse.Namespace) -> int:
    from isolate.image import Unauthorized, login

    try:
        username = _read_username(args)
        password = _read_password(args)
    except _LoginInputError as exc:
        print(f"isolate login: {exc}", file=sys.stderr)
        return 125
    try:
        login(args.registry, username, password, auth_file=args.auth_file,
              insecure=args.insecure)
    except Unauthorized as exc:
        print(f"isolate: {exc}", file=sys.stderr)
        return EXIT_LOGIN_FAILED
    print("Login Succeeded")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from isolate.image import logout

    if logout(args.registry, auth_file=args.auth_file):
        print(f"Removing login credentials for {args.registry}")
    else:
        print(f"Not logged in to {args.registry}")
    return 0


def register(sub: Any) -> None:
    """Add ``login`` and ``logout`` to the ``isolate`` parser's subparsers."""
    def add(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        p.add_argument("registry", metavar="REGISTRY", nargs="?", default="docker.io",
                       help="host[:port] of the registry (default: docker.io)")
        p.add_argument("--auth-file", metavar="FILE", default=None,
                       help="Docker config.json to use (default: $DOCKER_CONFIG/config.json, "
                       "else ~/.docker/config.json)")
        return p

    p = add("login", "check credentials against a registry and store them", cmd_login)
    p.add_argument("-u", "--username", default=None, metavar="USER")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from stdin (otherwise asked on the terminal)")
    p.add_argument("--insecure", metavar="HOST", action="append", default=[],
                   help="allow plain HTTP to this registry (loopback ones always may)")

    add("logout", "forget the stored credentials of a registry", cmd_logout)

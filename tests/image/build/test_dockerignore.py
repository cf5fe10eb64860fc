""".dockerignore: Docker's patterns, tested against a table of expectations, and the context
walk that applies them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isolate.image.build import BuildContext, DockerfileError, Ignores, read_patterns

# (ignore file, path, excluded?) -- the examples of Docker's documentation and more
TABLE = [
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp", True),
    ("*/temp*", "temp", False),
    ("*/temp*", "a/b/temp", False),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/*/temp*", "somedir/temporary.txt", False),
    ("temp?", "tempa", True),
    ("temp?", "tempab", False),
    ("temp?", "temp", False),
    ("**/*.go", "main.go", True),
    ("**/*.go", "a/b/c.go", True),
    ("**/*.go", "a/b/c.gox", False),
    ("*.md\n!README.md", "x.md", True),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
    ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
    # a directory pattern excludes everything below it
    ("node_modules", "node_modules/a/b.js", True),
    ("node_modules", "src/node_modules/a.js", False),
    ("**/node_modules", "src/node_modules/a.js", True),
    ("build/", "build/x", True),
    ("/build", "build/x", True),              # a leading / is the context root
    ("./build", "build/x", True),
    ("a/../b", "b", True),                    # patterns are cleaned
    ("dir/**", "dir/x/y", True),
    ("dir/**", "dir", False),
    ("dir/**", "dirx/y", False),
    ("**", "anything/at/all", True),
    ("*", "x/y", True),                       # * matches x, which holds y
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("[a-c].txt", "b.txt", True),
    ("[a-c].txt", "d.txt", False),
    ("[^a-c].txt", "d.txt", True),
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("# comment\n\n   \n  x  ", "x", True),
    ("#x", "#x", False),                      # '#' at the start makes a comment
    (" #x", "#x", True),                      # not after a space
    ("dir\n!dir/keep", "dir/keep", False),
    ("dir\n!dir/keep", "dir/other", True),
    ("*.log\n!important.log\n*.log", "important.log", True),  # the last match wins
    ("file.txt", "file.txt.bak", False),
    ("a?c", "a/c", False),                    # ? does not match /
    ("a.(b)+c", "a.(b)+c", True),             # regex characters are literal
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), TABLE)
def test_ignore_table(patterns: str, path: str, excluded: bool) -> None:
    assert Ignores(read_patterns(patterns)).excluded(path) is excluded


def test_read_patterns_cleans_and_strips() -> None:
    text = "\ufeff# c\n /a/b/../c \n!  /d\n\n*.txt\n"
    assert read_patterns(text) == ["a/c", "!d", "*.txt"]


def test_a_lone_exclamation_mark_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="illegal exclusion"):
        Ignores(["!"])


def test_an_unterminated_class_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="syntax error"):
        Ignores(["[abc"])


def tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_the_context_leaves_out_what_is_ignored(tmp_path: Path) -> None:
    tree(tmp_path, ["Dockerfile", "app/main.py", "app/test_x.py", "node_modules/a/b.js",
                    "docs/keep.md", "docs/drop.md", ".git/config", "secret.key"])
    (tmp_path / ".dockerignore").write_text(
        ".git\nnode_modules\n**/test_*.py\ndocs\n!docs/keep.md\n*.key\n")
    ctx = BuildContext.open(tmp_path)
    seen = sorted(e.path for e in ctx.walk() if e.kind != "dir")
    assert seen == [".dockerignore", "Dockerfile", "app/main.py", "docs/keep.md"]
    # the directory of a re-included file is there; one with nothing left is not
    assert ctx.entry("docs") is not None and ctx.entry("node_modules") is None


def test_a_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    tree(tmp_path, ["a.txt", "b.txt", "build/app.Dockerfile"])
    (tmp_path / ".dockerignore").write_text("a.txt\n")
    (tmp_path / "build" / "app.Dockerfile.dockerignore").write_text("b.txt\n")
    ctx = BuildContext.open(tmp_path, os.fspath(tmp_path / "build" / "app.Dockerfile"))
    assert ctx.entry("a.txt") is not None and ctx.entry("b.txt") is None
    # without that Dockerfile, the context's own file applies
    ctx = BuildContext.open(tmp_path, os.fspath(tmp_path / "Dockerfile"))
    assert ctx.entry("a.txt") is None and ctx.entry("b.txt") is not None

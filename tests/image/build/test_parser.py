"""The Dockerfile parser: lines, continuations, comments, directives, heredocs, locations."""

from __future__ import annotations

import pytest

from isolate.image.build import DockerfileError, parse


def nodes(text: str) -> list[tuple[str, tuple[str, ...], str]]:
    return [(n.keyword, n.flags, n.args) for n in parse(text).nodes]


@pytest.mark.parametrize(("text", "expected"), [
    ("FROM a\n", [("FROM", (), "a")]),
    ("from a\nrun echo hi\n", [("FROM", (), "a"), ("RUN", (), "echo hi")]),
    ("  FROM   a  \n\n\n   RUN   x\n", [("FROM", (), "a"), ("RUN", (), "x")]),
    # a continuation joins lines; whitespace of the continued line is kept
    ("FROM a\nRUN echo a \\\n  b\n", [("FROM", (), "a"), ("RUN", (), "echo a   b")]),
    # comments inside a continuation are dropped, empty lines skipped
    ("FROM a\nRUN a \\\n# note\nb \\\n\nc\n", [("FROM", (), "a"), ("RUN", (), "a b c")]),
    # a doubled escape at the end is a literal one, not a continuation
    ("FROM a\nRUN echo \\\\\nRUN x\n", [("FROM", (), "a"), ("RUN", (), "echo \\\\"),
                                        ("RUN", (), "x")]),
    # '#' after the start of a line is an argument
    ("FROM a\nRUN echo # not a comment\n", [("FROM", (), "a"),
                                            ("RUN", (), "echo # not a comment")]),
    ("# c\n  # indented comment\nFROM a\n", [("FROM", (), "a")]),
    # flags: quotes and escapes processed, -- ends them
    ('FROM a\nCOPY --chown="1:2" --from=b x y\n', [("FROM", (), "a"),
                                                   ("COPY", ("--chown=1:2", "--from=b"),
                                                    "x y")]),
    ("FROM a\nRUN -- --not-a-flag\n", [("FROM", (), "a"), ("RUN", (), "--not-a-flag")]),
    # CRLF line ends and a BOM
    ("\ufeffFROM a\r\nRUN b\r\n", [("FROM", (), "a"), ("RUN", (), "b")]),
    # a continuation at the end of the file
    ("FROM a\nRUN b \\", [("FROM", (), "a"), ("RUN", (), "b")]),
])
def test_lines_are_joined_and_split_as_docker_does(text: str, expected: list[object]) -> None:
    assert nodes(text) == expected


def test_escape_directive_changes_the_continuation_character() -> None:
    df = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo\n")
    assert df.escape == "`"
    assert df.directives == {"escape": "`"}
    assert df.nodes[1].args == "dir c:\\   && echo"


def test_directives_only_count_before_anything_else() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# check=skip=all\n\n# escape=`\nFROM a\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}
    assert df.escape == "\\"
    # an unknown directive ends the directives too (it is a comment)
    df = parse("# foo=bar\n# escape=`\nFROM a\n")
    assert df.directives == {} and df.escape == "\\"


def test_a_repeated_directive_is_an_error_with_its_line() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2:1: only one escape"):
        parse("# escape=`\n# escape=\\\nFROM a\n")


def test_a_bad_escape_names_line_and_column() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("#   escape=x\nFROM a\n")
    assert info.value.location is not None
    assert (info.value.location.line, info.value.location.column) == (1, 12)
    assert str(info.value).startswith("Dockerfile:1:12: invalid escape token")


def test_locations_cover_continued_lines() -> None:
    df = parse("FROM a\n\n  RUN a \\\n   b \\\n   c\nCMD x\n", filename="app.Dockerfile")
    run = df.nodes[1]
    assert (run.location.file, run.location.line, run.location.column,
            run.location.end_line) == ("app.Dockerfile", 3, 3, 5)
    assert df.nodes[2].location.line == 6


def test_empty_continuation_lines_are_a_warning() -> None:
    df = parse("FROM a\nRUN a \\\n\n b\n")
    assert len(df.warnings) == 1 and "Dockerfile:2:1" in df.warnings[0]


@pytest.mark.parametrize(("text", "name", "content", "expand", "chomp"), [
    ("RUN <<EOF\necho hi\nEOF\n", "EOF", "echo hi\n", True, False),
    ('RUN <<"EOF"\necho $x\nEOF\n', "EOF", "echo $x\n", False, False),
    ("RUN <<'EOF'\necho $x\nEOF\n", "EOF", "echo $x\n", False, False),
    ("RUN <<-EOF\n\techo hi\n\tEOF\n", "EOF", "\techo hi\n", True, True),
    ("RUN cat <<END > /x\na\n\nb\nEND\n", "END", "a\n\nb\n", True, False),
    ("COPY <<EOF /etc/x\nline\nEOF\n", "EOF", "line\n", True, False),
    ("RUN 3<<EOF cat <&3\nz\nEOF\n", "EOF", "z\n", True, False),
])
def test_heredocs(text: str, name: str, content: str, expand: bool, chomp: bool) -> None:
    node = parse("FROM a\n" + text + "RUN after\n").nodes[1]
    assert len(node.heredocs) == 1
    doc = node.heredocs[0]
    assert (doc.name, doc.content, doc.expand, doc.chomp) == (name, content, expand, chomp)
    assert parse("FROM a\n" + text + "RUN after\n").nodes[2].args == "after"


def test_several_heredocs_are_read_in_order() -> None:
    node = parse("FROM a\nRUN <<A cat && <<B cat\none\nA\ntwo\nB\n").nodes[1]
    assert [(d.name, d.content) for d in node.heredocs] == [("A", "one\n"), ("B", "two\n")]
    assert node.location.end_line == 6


def test_chomped_heredoc_text_loses_leading_tabs() -> None:
    doc = parse("FROM a\nRUN <<-EOF\n\t\tx\n\ty\nEOF\n").nodes[1].heredocs[0]
    assert doc.text == "x\ny\n"


def test_heredoc_markers_in_quotes_or_exec_form_are_not_heredocs() -> None:
    df = parse('FROM a\nRUN echo "<<EOF"\nRUN ["sh", "-c", "cat <<EOF"]\nENV A=<<EOF\n')
    assert all(not n.heredocs for n in df.nodes)
    assert len(df.nodes) == 4


def test_onbuild_run_may_carry_a_heredoc() -> None:
    node = parse("FROM a\nONBUILD RUN <<EOF\nx\nEOF\n").nodes[1]
    assert node.heredocs[0].content == "x\n"


def test_an_unterminated_heredoc_names_where_it_started() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2:1: unterminated heredoc 'EOF'"):
        parse("FROM a\nRUN <<EOF\nx\n")


def test_a_file_without_instructions_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="no instructions"):
        parse("# only a comment\n\n")


def test_non_utf8_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="UTF-8"):
        parse(b"FROM \xff\n")

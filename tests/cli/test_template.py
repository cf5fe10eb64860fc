"""The Go-template subset of ``--format``: tables of (template, data, output) as Go's
text/template (with Docker's functions) gives them, and the errors it reports."""

from __future__ import annotations

from typing import Any

import pytest

from isolate.cli.template import Template, TemplateError, go_print, render

DATA: dict[str, Any] = {
    "Id": "4f2a" + "0" * 60,
    "Name": "/web",
    "State": {"Status": "running", "Running": True, "Pid": 1234, "ExitCode": 0,
              "Error": "", "OOMKilled": False},
    "Config": {"Env": ["PATH=/bin", "MODE=demo"], "Cmd": ["sh", "-c", "echo hi"],
               "Labels": {"b": "2", "a": "1"}, "Entrypoint": None, "Tty": False,
               "Image": "busybox:latest"},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data"},
               {"Type": "bind", "Source": "/srv", "Destination": "/srv"}],
    "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
    "Size": 1.5,
    "Empty": [],
    "Zero": 0,
}

CASES = [
    # fields, printing
    ("{{.Id}}", DATA["Id"]),
    ("{{.State.Status}}", "running"),
    ("{{.State.Running}} {{.State.Pid}} {{.State.OOMKilled}}", "true 1234 false"),
    ("{{.Config.Env}}", "[PATH=/bin MODE=demo]"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Config.Missing}}", "<no value>"),
    ("{{.Size}}", "1.5"),
    ("{{.Empty}}", "[]"),
    ("plain text", "plain text"),
    ("{{.}}" , None),  # checked separately: the whole map
    # json
    ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
    ("{{json .State.Running}}", "true"),
    ("{{json .Config.Entrypoint}}", "null"),
    ("{{json .Mounts}}", '[{"Type":"volume","Name":"data","Destination":"/data"},'
                         '{"Type":"bind","Source":"/srv","Destination":"/srv"}]'),
    ('{{json "<&>"}}', '"<&>"'),
    ("{{.Config | json}}", None),
    # range
    ("{{range .Config.Env}}{{.}};{{end}}", "PATH=/bin;MODE=demo;"),
    ("{{range $i, $e := .Config.Cmd}}{{$i}}={{$e}} {{end}}", "0=sh 1=-c 2=echo hi "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "a=1,b=2,"),
    ("{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}", "volume:/data bind:/srv "),
    ("{{range .Empty}}x{{else}}none{{end}}", "none"),
    ("{{range .Config.Missing}}x{{else}}none{{end}}", "none"),
    ("{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> {{(index $conf 0).HostPort}}"
     "{{end}}", "80/tcp -> 8080"),
    ("{{range .Config.Env}}{{if eq . \"MODE=demo\"}}{{break}}{{end}}{{.}}{{end}}",
     "PATH=/bin"),
    ("{{range .Config.Env}}{{if eq . \"PATH=/bin\"}}{{continue}}{{end}}{{.}}{{end}}",
     "MODE=demo"),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .Mounts}}{{$.Name}}{{end}}", "/web/web"),
    # if / else if / with
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Zero}}a{{else if .Empty}}b{{else if .Name}}c{{end}}", "c"),
    ("{{if not .State.Running}}down{{else}}up{{end}}", "up"),
    ("{{if and .State.Running (eq .State.ExitCode 0)}}ok{{end}}", "ok"),
    ("{{if or .Zero .Empty}}t{{else}}f{{end}}", "f"),
    ("{{or .Zero \"fallback\"}}", "fallback"),
    ("{{and .Name .Zero}}", "0"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .Config.Missing}}x{{else}}no{{end}}", "no"),
    ("{{with $s := .State.Status}}{{$s}}{{end}}", "running"),
    # comparisons
    ("{{eq .State.Status \"running\"}}", "true"),
    ("{{eq .State.Status \"a\" \"b\" \"running\"}}", "true"),
    ("{{ne .State.Pid 1}}", "true"),
    ("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 1.5 1}}", "true true false true"),
    # variables
    ("{{$x := .Name}}{{$x}}", "/web"),
    ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
    ("{{$}}", None),
    # functions
    ("{{len .Config.Env}} {{len .Name}} {{len .Config.Labels}}", "2 4 2"),
    ("{{index .Config.Env 1}}", "MODE=demo"),
    ("{{index .Config.Labels \"a\"}}", "1"),
    ("{{index .NetworkSettings.Ports \"80/tcp\" 0 | json}}",
     '{"HostIp":"0.0.0.0","HostPort":"8080"}'),
    ("{{slice .Id 0 4}}", "4f2a"),
    ("{{join .Config.Cmd \" \"}}", "sh -c echo hi"),
    ("{{split .Config.Image \":\"}}", "[busybox latest]"),
    ("{{index (split .Config.Image \":\") 1}}", "latest"),
    ("{{upper .State.Status}} {{lower \"ABC\"}} {{title \"hello world\"}}",
     "RUNNING abc Hello World"),
    ("{{pad .State.Status 1 2}}|", " running  |"),
    ("{{truncate .Id 12}}", "4f2a00000000"),
    ("{{.State.Status | upper}}", "RUNNING"),
    ("{{printf \"%s has pid %d\" .Name .State.Pid}}", "/web has pid 1234"),
    ("{{printf \"%-8s|%5d|%05d|%q|%v|%t\" \"ab\" 42 42 \"x\" .Config.Env true}}",
     'ab      |   42|00042|"x"|[PATH=/bin MODE=demo]|true'),
    ("{{printf \"%.2f %x %%\" 3.14159 255}}", "3.14 ff %"),
    ("{{printf \"%d\" \"x\"}}", "%!d(string=x)"),
    ("{{printf \"%s %s\" \"a\"}}", "a %!s(MISSING)"),
    ("{{print \"a\" 1 2 \"b\"}}", "a1 2b"),
    ("{{println .Name .State.Pid}}", "/web 1234\n"),
    # literals and trim markers
    ("{{\"a\\tb\"}}", "a\tb"),
    ("{{`raw\\n`}}", "raw\\n"),
    ("{{0x10}} {{1e3}} {{-2}} {{true}} {{nil}}", "16 1000 -2 true <nil>"),
    ("a  {{- .State.Status -}}  b", "arunningb"),
    ("{{/* a comment */}}x", "x"),
    ("{{-3}} {{- 4}}", "-34"),
    ("a {{- /* trimmed */ -}} b", "ab"),
    ("{{ .State.Status }}", "running"),
]


@pytest.mark.parametrize(("source", "expected"), [c for c in CASES if c[1] is not None])
def test_template_renders_as_go_does(source: str, expected: str) -> None:
    assert render(source, DATA) == expected


def test_dot_prints_the_whole_value_as_a_go_map() -> None:
    out = render("{{.}}", {"b": [1, "x"], "a": {"k": None}})
    assert out == "map[a:map[k:<nil>] b:[1 x]]"
    assert render("{{$}}", [1, 2]) == "[1 2]"


def test_json_of_a_whole_section_is_compact_in_the_data_order() -> None:
    assert render("{{.Config | json}}", DATA) == (
        '{"Env":["PATH=/bin","MODE=demo"],"Cmd":["sh","-c","echo hi"],'
        '"Labels":{"b":"2","a":"1"},"Entrypoint":null,"Tty":false,"Image":"busybox:latest"}')


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (1e6, "1e+06"), (123456.0, "123456"), (1.5e-7, "1.5e-07"), (0.0001, "0.0001"),
    (-2.5, "-2.5"), (True, "true"), (None, "<nil>"), ((), "[]"), ({}, "map[]"),
])
def test_values_print_as_go_fmt_prints_them(value: Any, text: str) -> None:
    assert go_print(value) == text


def test_header_mode_passes_text_through_the_string_functions() -> None:
    t = Template("{{.ID}}\t{{.Names | upper}}\t{{json .Labels}}\t{{truncate .Command 3}}")
    header = t.render({"ID": "CONTAINER ID", "Names": "NAMES", "Labels": "LABELS",
                       "Command": "COMMAND"}, header=True)
    assert header == "CONTAINER ID\tNAMES\tLABELS\tCOMMAND"


@pytest.mark.parametrize(("source", "message"), [
    ("{{.Name", "unclosed action"),
    ("{{if .Name}}x", "has no {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{range .Config.Env}}x{{else}}y", "has no {{end}}"),
    ("{{nosuch .Name}}", "function 'nosuch' not defined"),
    ("{{.Name | .State}}", "can't give argument to non-function"),
    ("{{.Name.Foo}}", "can't evaluate field Foo in type string"),
    ("{{.Config.Entrypoint.X}}", "nil pointer evaluating interface {}.X"),
    ("{{$nope}}", "undefined variable: $nope"),
    ("{{index .Config.Env 9}}", "index out of range: 9"),
    ("{{len .State.Pid}}", "len of type int"),
    ("{{lt .Name 1}}", "incompatible types for comparison"),
    ("{{break}}", "outside {{range}}"),
    ("{{range .Name}}{{end}}", "range can't iterate over /web"),
    ("{{json}}", "wrong number of args for json"),
    ("{{(}}", "unclosed left paren"),
    ("{{)}}", "unexpected right paren"),
    ("{{/* open", "unclosed comment"),
    ("{{define \"x\"}}{{end}}", "not supported"),
    ("{{}}", "missing value for command"),
    ("{{\"\\q\"}}", "bad quoted string"),
    ("{{#}}", "unexpected '#'"),
])
def test_bad_templates_fail_with_one_positioned_message(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, DATA)
    text = str(info.value)
    assert text.startswith("template: :1:"), text
    assert message in text, text
    assert "\n" not in text


def test_errors_name_the_line_and_column() -> None:
    with pytest.raises(TemplateError, match=r"^template: :2:4: executing"):
        render("a\nb {{.Name.X}}", DATA)

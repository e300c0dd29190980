"""tests/case_files.py: the one way a .cases file is read (headers, bodies, escapes, commands)."""

from case_files import decode, read_cases, read_command_cases


def test_bodies_headers_and_escapes(tmp_path):
    path = tmp_path / "a.cases"
    path.write_text(
        "# a comment before the first case\n"
        "### crlf  2:1  duplicate\n"
        "x = 1\\r\n"
        "y = \\\\ é\\n\n"
        "\n"
        "\n"
        "### empty  1:1  no equation 'q'\n"
        "### blank-inside  3:5  \\u2028 seen\n"
        "a\n"
        "\n"
        "\\tb\\ufeff\n",
        encoding="utf-8",
    )
    cases = read_cases(path)
    assert [tuple(c) for c in cases] == [
        ("crlf", "x = 1\r\ny = \\ é\n", 2, 1, "duplicate"),
        ("empty", "", 1, 1, "no equation 'q'"),
        ("blank-inside", "a\n\n\tb\ufeff", 3, 5, "\u2028 seen"),
    ]


def test_decode_keeps_what_is_not_an_escape():
    assert decode("é \\x00 \\\\n") == "é \x00 \\n"


def test_command_cases_are_shell_words_with_named_paths(tmp_path):
    path = tmp_path / "c.cases"
    path.write_text("### quoted  not a number\nsearch {examples}/a.rec --require 'rate<=one'\n  --set a=1\n")
    (case,) = read_command_cases(path)
    assert case.id == "quoted" and case.message == "not a number"
    assert case.argv(examples=tmp_path) == [
        "search",
        f"{tmp_path}/a.rec",
        "--require",
        "rate<=one",
        "--set",
        "a=1",
    ]

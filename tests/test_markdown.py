from apexgen.markdown import markdown_table


def test_a_table_has_its_header_alignment_and_one_line_per_row():
    table = markdown_table(("name", "value", "share"), [("a", 1, "10 %"), ("b", 2.5, "—")], right_from=1)
    assert table.splitlines() == [
        "| name | value | share |",
        "|---|---:|---:|",
        "| a | 1 | 10 % |",
        "| b | 2.5 | — |",
    ]
    assert markdown_table(("x",), []).splitlines() == ["| x |", "|---|"]

"""Loading CSVs: what is accepted, and the one-line error for each file we cannot use."""

import pandas as pd
import pytest

from tabserve.tables import DataError, load_csv


def write(tmp_path, content: bytes | str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_cells_are_trimmed_and_missing_spellings_become_na(tmp_path):
    path = write(tmp_path, "a , b,c\n 1 , x ,NA\n2,, null \n")
    frame = load_csv(path)
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["a"].tolist() == ["1", "2"]
    assert frame["b"].iloc[0] == "x" and pd.isna(frame["b"].iloc[1])
    assert frame["c"].isna().all()


def test_semicolon_delimited_file_is_read(tmp_path):
    frame = load_csv(write(tmp_path, "a;b\n1;x\n2;y\n"))
    assert frame.shape == (2, 2)


def test_utf8_bom_is_ignored(tmp_path):
    frame = load_csv(write(tmp_path, b"\xef\xbb\xbfa,b\n1,2\n"))
    assert list(frame.columns) == ["a", "b"]


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"  \n\n", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    (b"a,b\n1,\xff\xfe\n", "not UTF-8"),
    (b"just some words\nmore words\n", "no comma or other delimiter"),
    (b"a,b,a\n1,2,3\n", "duplicate column names: a"),
    (b"a,,c\n1,2,3\n", "column 2 of the header has no name"),
    (b"a,b\n", "header row but no data rows"),
    (b'a,b\n1,"unclosed\n', "not a valid CSV"),
])
def test_bad_files_get_one_clear_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message) as caught:
        load_csv(write(tmp_path, content))
    assert "\n" not in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="not a regular file"):
        load_csv(tmp_path)

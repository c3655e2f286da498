"""Import of export files that were edited or cut (found in a QA pass, 2026-12-01): a byte
order mark an editor put at the start made the first line "not a queuewatch export line"
(JSONDecodeError: Unexpected UTF-8 BOM) on every run; a file cut mid-line and lines that
are not export lines are reported by number, the rest imported."""

from __future__ import annotations

from tests.helpers import depth
from tests.integration.test_dlq_support import publish_dead_letters, setup_jobs


async def test_an_export_saved_with_a_byte_order_mark_and_crlf_imports_whole(
        cli, connection, vhost, tmp_path):
    # Given an export of 10 dead letters, saved again by an editor (BOM, CRLF line ends)
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 10)
    path = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "jobs", str(path)))[0] == 0
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert (await cli("dlq", "purge", "jobs", "--yes"))[0] == 0
    # When imported, Then every line is, the first one too
    code, out, _ = await cli("dlq", "import", "jobs", str(edited))
    assert code == 0 and "imported 10 of 10" in out, out
    assert await depth(connection, "jobs.dlq") == 10


async def test_a_cut_file_and_lines_that_are_not_export_lines_are_reported_by_number(
        cli, connection, vhost, tmp_path):
    # Given an export of 20, cut in the middle of its 11th line, with three lines that are
    # not export lines after the 5th (a JSON list, a string, a body that is not base64)
    await setup_jobs(connection, vhost)
    await publish_dead_letters(connection, "jobs", 20)
    path = tmp_path / "e.jsonl"
    assert (await cli("dlq", "export", "jobs", str(path)))[0] == 0
    lines = path.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines[:5]) + b'[1, 2]\n"text"\n{"body_b64": "!!"}\n'
                    + b"".join(lines[5:10]) + lines[10][:30])
    assert (await cli("dlq", "purge", "jobs", "--yes"))[0] == 0
    # When imported
    code, out, err = await cli("dlq", "import", "jobs", str(bad))
    # Then the ten whole lines are imported, the four others reported by number (exit 1),
    # without a Python attribute error for a line that is not an object
    assert code == 1 and "imported 10 of 14" in out and "Traceback" not in err, (out, err)
    for n in (6, 7, 8, 14):
        assert f"message {n}: not a queuewatch export line" in out, out
    assert "a JSON object is expected, not list" in out and "AttributeError" not in out, out
    assert await depth(connection, "jobs.dlq") == 10

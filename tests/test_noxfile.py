"""nox sessions pass what their docstrings promise (the sessions themselves run in CI's `nox -s bench`)."""

from __future__ import annotations

from natbench.results import append_row


class Session:
    def __init__(self, posargs):
        self.posargs, self.calls = posargs, []

    def run(self, *args, **kwargs):
        self.calls.append(args)

    def log(self, *args):
        pass


def test_claims_session_judges_a_directory_with_rows_and_sweeps_only_an_empty_one(tmp_path, noxfile):
    swept = tmp_path / "swept"
    append_row(swept, {"case_id": "a", "status": "ok"})
    session = Session([str(swept)])
    noxfile.claims(session)
    (args,) = session.calls
    assert "--run" not in args and str(swept) in args  # rows/*.jsonl: judged as it is, never swept into again
    session = Session([str(tmp_path / "empty")])
    noxfile.claims(session)
    assert "--run" in session.calls[0]

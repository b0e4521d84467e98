"""Malformed CLI options: one clear error line, a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skiplab.cli import main


def _unknown_claims(spec):
    from skiplab.claims import select_claims

    try:
        select_claims(spec)
    except ValueError:
        return True
    return False  # a spec naming real claims would run them: not a malformed option


def _not_number(s):
    try:
        float(s)
    except ValueError:
        return True
    return False


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20
)
not_int = text.filter(lambda s: _not_number(s) and not s.startswith("-"))
bad_float = st.one_of(
    not_int, st.floats(max_value=0).map(repr), st.sampled_from(["nan", "-inf", "0", "1e"])
)
bad_choice = text.filter(lambda s: s not in ("tiny", "quick", "full") and not s.startswith("-"))
bad_claim = st.text(alphabet="ABCXYZ019_-,; <>'\"", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-") and s.strip(" ,")
)
unknown_opt = st.from_regex(r"--[a-z][a-z-]{2,12}", fullmatch=True).filter(
    lambda s: s not in {"--help", "--version"}
)

cases = st.one_of(
    st.tuples(st.just(["train", "resnet20", "--epochs"]), not_int),
    st.tuples(st.just(["train", "resnet20", "--batch-size"]), not_int),
    st.tuples(st.just(["train", "resnet20", "--lr"]), bad_float),
    st.tuples(st.just(["train", "resnet20", "--optimizer"]), bad_choice),
    st.tuples(st.just(["train", "resnet20", "--recipe"]), bad_choice),
    st.tuples(st.just(["reproduce", "--scale"]), bad_choice),
    st.tuples(st.just(["reproduce", "--seeds"]), not_int),
    st.tuples(st.just(["reproduce", "--claims"]), bad_claim.filter(_unknown_claims)),
    st.tuples(st.just(["runs", "--limit"]), not_int),
    st.tuples(
        st.just(["list"]), bad_choice.filter(lambda s: s not in {"models", "claims", "datasets"})
    ),
    st.tuples(st.sampled_from([["train", "resnet20"], ["reproduce"], ["runs"]]), unknown_opt),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=cases)
def test_malformed_options_give_one_clear_line(case, capsys, tmp_path):
    head, value = case
    argv = [*head, value, "--store", str(tmp_path / "s.sqlite")]
    if head[-1] == "resnet20" or head == ["reproduce"] or head == ["runs"]:
        argv = [*head, value]  # an unknown option on its own
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, code, out, err)
    assert len(lines) == 1 and lines[0].startswith("skiplab: error: "), (argv, err)
    assert "Traceback" not in err + out
    assert not (tmp_path / "s.sqlite").exists()  # nothing was started


def test_bad_store_file_and_bad_data_dir_are_one_line(tmp_path, capsys):
    bad = tmp_path / "not.sqlite"
    bad.write_bytes(b"garbage" * 300)
    assert main(["runs", "--store", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not.sqlite" in err[0]
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "data_batch_1.bin").write_bytes(b"\1" * 100)
    code = main(["train", "resnet20", "--data", "cifar10", "--data-dir", str(tmp_path / "cifar")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "data_batch_1.bin has 100 bytes, expected 30730000" in err[0]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "resnet20", "--epochs", "zero"], "'zero' is not a valid integer"),
        (["reproduce", "--claims", "C99<script>", "--scale", "tiny"], "unknown claim"),
    ],
)
def test_real_subprocess_error_is_one_line(argv, needle, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "skiplab.cli", *argv, "--store", str(tmp_path / "s.sqlite")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("skiplab: error: ") and needle in lines[0]
    assert "Traceback" not in proc.stderr

"""Mutated DICOM bytes never crash the reader: every outcome is a conversion or one InputError (file, reason)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breastseg.dicom.convert import convert_dicom_dir
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn
from breastseg.us.readers import read_dicom_us

_SEED_DIR = Path(tempfile.mkdtemp(prefix="breastseg-fuzz-"))
SEED = syn.write_series(_SEED_DIR / "s", syn.SeriesSpec(series_number=3, slices=1, rows=6, cols=5))[0].read_bytes()
shutil.rmtree(_SEED_DIR, ignore_errors=True)

mutations = st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=12)
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _mutate(edits, cut: int) -> bytes:
    data = bytearray(SEED)
    for pos, value in edits:
        data[pos] = value
    return bytes(data[:cut])


@FUZZ
@given(edits=mutations, cut=st.integers(0, len(SEED)))
def test_mutated_dicom_gives_a_conversion_or_one_input_error(edits, cut):
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        (src / "x.dcm").write_bytes(_mutate(edits, cut))
        try:
            convert_dicom_dir(src, out)
        except InputError as err:
            assert "\n" not in str(err) and err.reason
            assert not out.exists()  # nothing half-written


@FUZZ
@given(edits=mutations, cut=st.integers(0, len(SEED)))
def test_mutated_dicom_us_gives_a_scan_or_one_input_error(edits, cut):
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.dcm"
        path.write_bytes(_mutate(edits, cut))
        np.save(Path(tmp) / "x_mask.npy", np.zeros((6, 5), np.uint8))
        try:
            read_dicom_us(path)
        except InputError as err:
            assert "\n" not in str(err) and err.reason


def test_the_seed_itself_converts(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.dcm").write_bytes(SEED)
    assert convert_dicom_dir(tmp_path / "in", tmp_path / "out")["n_series"] == 1  # the mutations start from valid

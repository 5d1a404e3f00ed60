"""BUSI in both of its published layouts: the archive's ``<class>/<class> (N).png`` with the masks beside each image,
and the public git snapshot's ``<class>/images/`` with the masks in ``<class>/mask/``. Both give the same scans,
the same unit ids and pseudonyms (so the same split) and the same converted files; a BUSI folder in which no image
has a mask is refused in one line instead of being read as "not annotated"."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from us_cohorts import write_busi_cohort

from breastseg.data.cohort import discover, write_fingerprints
from breastseg.errors import InputError
from breastseg.labels import NOT_ANNOTATED
from breastseg.pseudonym import load_key
from breastseg.us.readers import read_busi, read_scans

SHAPE = (24, 32)


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _cohort(root: Path, layout: str) -> Path:
    """A tiny BUSI-like cohort: masses with one to three mask files, a normal image with an empty mask and one
    image nobody annotated yet; identical pixels whatever the layout."""
    write_busi_cohort(root, n=4, shape=SHAPE, layout=layout)
    snapshot = layout == "snapshot"
    us = root / "us"

    def where(cls: str) -> tuple[Path, Path]:
        return (us / cls / "images", us / cls / "mask") if snapshot else (us / cls, us / cls)

    images, masks = where("benign")
    third = np.zeros(SHAPE, np.uint8)
    third[20:23, 25:30] = 255
    _png(masks / "benign (3)_mask_2.png", third)  # a third region (BUSI has one such image)
    images, masks = where("normal")
    _png(images / "normal (1).png", np.full((*SHAPE, 3), 90, np.uint8))
    _png(masks / "normal (1)_mask.png", np.zeros(SHAPE, np.uint8))  # normal: a mask without a mass
    images, _ = where("malignant")
    _png(images / "malignant (9).png", np.full((*SHAPE, 3), 40, np.uint8))  # not annotated yet
    return root


@pytest.fixture
def both(tmp_path):
    return _cohort(tmp_path / "archive", "archive"), _cohort(tmp_path / "snapshot", "snapshot")


def _by_patient(scans):
    return {s.patient: s for s in scans}


def test_both_layouts_read_the_same_scans(both):
    archive, snapshot = both
    assert (snapshot / "us" / "benign" / "images" / "benign (1).png").exists()
    assert (snapshot / "us" / "benign" / "mask" / "benign (3)_mask_1.png").exists()
    assert not list((snapshot / "us" / "benign" / "images").glob("*_mask*"))
    for reader in (read_busi, read_scans):
        a, s = _by_patient(reader(archive / "us")), _by_patient(reader(snapshot / "us"))
        assert sorted(a) == sorted(s) == ["benign-1", "benign-3", "malignant-2", "malignant-4", "malignant-9",
                                          "normal-1"]
        for pid in a:
            x, y = a[pid], s[pid]
            assert (x.scan, x.label_class, x.source, x.spacing_mm, x.spacing_known, x.extra) == \
                   (y.scan, y.label_class, y.source, y.spacing_mm, y.spacing_known, y.extra), pid
            np.testing.assert_array_equal(x.bmode, y.bmode)
            np.testing.assert_array_equal(x.mask, y.mask)
            assert Path(x.path).name == Path(y.path).name
    s = _by_patient(read_busi(snapshot / "us"))
    # the regions of every mask file are merged; the class comes from the folder above images/
    assert s["benign-3"].extra["masks"] == ["benign (3)_mask.png", "benign (3)_mask_1.png", "benign (3)_mask_2.png"]
    assert s["benign-3"].mask[3, 3] == 1 and s["benign-3"].mask[21, 26] == 1
    assert s["benign-3"].label_class == "benign" and s["normal-1"].label_class == "normal"
    assert s["normal-1"].mask.sum() == 0
    assert (s["malignant-9"].mask == NOT_ANNOTATED).all()  # one image without a mask: not annotated yet
    assert {p: v.mask.max() for p, v in s.items() if p != "malignant-9"} == dict.fromkeys(
        ["benign-1", "benign-3", "malignant-2", "malignant-4"], 1) | {"normal-1": 0}
    # one image read on its own, and a class's images/ folder, find their masks in mask/
    one = read_scans(snapshot / "us" / "benign" / "images" / "benign (3).png")[0]
    np.testing.assert_array_equal(one.mask, s["benign-3"].mask)
    assert {x.patient for x in read_scans(snapshot / "us" / "malignant" / "images")} == {
        "malignant-2", "malignant-4", "malignant-9"}


def test_both_layouts_discover_the_same_units_and_convert_to_the_same_files(both, tmp_path):
    from breastseg.cli import main

    key = load_key(tmp_path / "k.key")
    archive, snapshot = both
    a, s = discover(archive, "us", key), discover(snapshot, "us", key)
    assert list(a) == list(s) and len(a) == 6  # same pseudonyms: the split does not depend on the layout
    for pid in a:
        assert (a[pid].layouts, a[pid].select, a[pid].has_rf) == (s[pid].layouts, s[pid].select, s[pid].has_rf)
        assert [Path(f).name for f in a[pid].files] == [Path(f).name for f in s[pid].files]
    names = sorted(tuple(Path(f).name for f in p.files) for p in s.values())
    assert ("benign (3).png", "benign (3)_mask.png", "benign (3)_mask_1.png", "benign (3)_mask_2.png") in names
    assert ("malignant (9).png",) in names

    outputs = []
    for name, found in (("archive", a), ("snapshot", s)):
        out = tmp_path / f"interim-{name}"
        for fp in write_fingerprints(found, tmp_path / f"fp-{name}", shards=2).values():
            assert main(["-q", "convert-shard", "us", str(fp), str(tmp_path / f"{name}-{fp.stem}.json"),
                         "--interim-dir", str(out), "--log-dir", str(tmp_path / f"logs-{name}")]) == 0
        # (.converted holds the digest of the raw files' paths and bytes: the paths differ, the outputs do not)
        outputs.append({str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*"))
                        if f.is_file() and f.name != ".converted"})
    assert outputs[0].keys() == outputs[1].keys() and len([k for k in outputs[0] if k.endswith("mask.npy")]) == 6
    assert outputs[0] == outputs[1]


def _move_masks_away(root: Path) -> None:
    """The snapshot with its mask folders renamed: the reader finds no mask anywhere."""
    for cls in ("benign", "malignant", "normal"):
        folder = root / "us" / cls / "mask"
        if folder.exists():
            folder.rename(folder.with_name("labels"))


@pytest.mark.parametrize("layout", ["archive", "snapshot"])
def test_a_busi_cohort_without_any_mask_is_refused_in_one_line(tmp_path, layout):
    root = _cohort(tmp_path / layout, layout)
    if layout == "snapshot":
        _move_masks_away(root)
    else:
        for m in (root / "us").rglob("*_mask*.png"):
            m.unlink()
    us = root / "us"
    for call in (lambda: read_busi(us), lambda: read_scans(us), lambda: discover(root, "us"),
                 lambda: read_scans(us / "benign")):
        with pytest.raises(InputError, match=r"none of its \d+ BUSI images has a mask, so none is annotated "
                                             r"\(expected <class>/<image>.png .*<class>/mask/") as err:
            call()
        assert err.value.path in (str(us), str(us / "benign")) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="none of its 6 BUSI images"):
        discover(root, "us")
    # a single image is still read: one nobody annotated yet
    lone = next(us.rglob("benign (1).png"))
    assert (read_scans(lone)[0].mask == NOT_ANNOTATED).all()


def test_the_cli_refuses_an_unannotated_busi_folder_with_one_line(tmp_path, capsys):
    from breastseg.cli import main

    root = _cohort(tmp_path / "c", "snapshot")
    _move_masks_away(root)
    assert main(["us-maps", str(root / "us"), str(tmp_path / "out"), "--maps", "bmode"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"breastseg: error: {root / 'us'}: none of its 6 BUSI images has a mask")
    assert not (tmp_path / "out").exists()


def test_one_annotated_image_is_enough_and_other_images_stay_unannotated(tmp_path):
    root = _cohort(tmp_path / "c", "snapshot")
    keep = root / "us" / "normal" / "mask"
    _move_masks_away(root)
    shutil.copytree(root / "us" / "normal" / "labels", keep)  # only normal (1) keeps its (empty) mask
    scans = _by_patient(read_busi(root / "us"))
    assert scans["normal-1"].mask.sum() == 0 and (scans["benign-1"].mask == NOT_ANNOTATED).all()
    assert len(discover(root, "us")) == 6
    # a folder of images outside class folders is no BUSI cohort: images without masks are just not annotated
    _png(tmp_path / "patient" / "scan.png", np.full(SHAPE, 70, np.uint8))
    assert (read_scans(tmp_path / "patient")[0].mask == NOT_ANNOTATED).all()

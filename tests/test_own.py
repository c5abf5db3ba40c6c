"""Your own pictures: filed by `digits add` under a content-hash name, read back as predict sees
them, split by a hash of their bytes, mixed into training and measured apart; and, through
`dvc repro` on the tiny project, the loop of adding pictures and going back."""

import hashlib
import io
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    ALWAYS_RUN,
    commit_all,
    dvc,
    file_contents,
    files_under,
    git,
    stages_run,
)
from PIL import Image, ImageDraw

from digits.cli import main
from digits.data import load_split, mix_in, own_count, save_split
from digits.errors import DigitsError
from digits.evaluation import MIN_PER_CLASS, metrics_on_own_test
from digits.images import ImageError, picture_frame
from digits.own import (
    NAME_HASH_CHARS,
    OwnPictureError,
    directory_md5,
    file_picture,
    parse_version,
    pictures_version,
    read_own_pictures,
    read_tracked_pictures,
    split_of,
)
from digits.params import OwnParams

STOP = OwnParams(test_fraction=0.3, seed=42, bad_pictures="stop")
SKIP = OwnParams(test_fraction=0.3, seed=42, bad_pictures="skip")

# Each digit as pen strokes in a 100x150 box (x right, y down): crude, but each is a digit.
STROKES = {
    0: [[(50, 10), (85, 40), (85, 110), (50, 140), (15, 110), (15, 40), (50, 10)]],
    1: [[(35, 35), (55, 10), (55, 140)]],
    2: [[(15, 40), (50, 10), (85, 40), (15, 140), (85, 140)]],
    3: [[(15, 20), (80, 20), (45, 70), (85, 105), (50, 140), (15, 125)]],
    4: [[(65, 140), (65, 10), (10, 100), (90, 100)]],
    5: [[(85, 10), (20, 10), (15, 65), (80, 75), (80, 130), (15, 135)]],
    6: [[(80, 10), (20, 80), (20, 130), (80, 130), (80, 85), (20, 85)]],
    7: [[(10, 15), (90, 15), (40, 140)]],
    8: [[(50, 75), (15, 40), (50, 10), (85, 40), (15, 110), (50, 140), (85, 110), (50, 75)]],
    9: [[(80, 70), (20, 70), (20, 20), (80, 20), (80, 140)]],
}


def drawn_digit(digit: int, variant: int = 0, image_format: str = "PNG") -> bytes:
    """A dark ``digit`` on light paper, 200x300, its pen width and place set by ``variant``
    (each variant gives other bytes): the bytes of an image file in ``image_format``."""
    image = Image.new("L", (200, 300), 250)
    shift = 10 * (variant % 4)
    for stroke in STROKES[digit]:
        points = [(50 + x + shift, 75 + y) for x, y in stroke]
        ImageDraw.Draw(image).line(points, fill=20, width=12 + 2 * (variant % 3), joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def blank_picture() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (60, 60), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def own_pictures(own_dir: Path, per_class: int) -> list[Path]:
    """``per_class`` drawn pictures of each digit, filed under ``own_dir``."""
    return [
        file_picture(drawn_digit(digit, variant), digit, own_dir)
        for digit in range(10)
        for variant in range(per_class)
    ]


def test_a_picture_is_filed_under_its_label_by_a_hash_of_its_bytes(tmp_path):
    data = drawn_digit(7)
    filed = file_picture(data, 7, tmp_path / "own")
    assert (
        filed == tmp_path / "own/7" / f"{hashlib.sha256(data).hexdigest()[:NAME_HASH_CHARS]}.png"
    )
    assert filed.read_bytes() == data
    jpeg = file_picture(drawn_digit(7, image_format="JPEG"), 7, tmp_path / "own")
    assert jpeg.suffix == ".jpg"


def test_the_same_picture_filed_twice_is_one_file(tmp_path):
    first = file_picture(drawn_digit(3), 3, tmp_path / "own")
    again = file_picture(drawn_digit(3), 3, tmp_path / "own")
    assert again == first and files_under(tmp_path / "own") == [first]


@pytest.mark.parametrize("label", [10, -1, "7", True, 7.0])
def test_a_label_that_is_not_a_digit_is_refused(tmp_path, label):
    with pytest.raises(OwnPictureError, match="expected a digit 0-9"):
        file_picture(drawn_digit(7), label, tmp_path / "own")
    assert not (tmp_path / "own").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a picture", "the picture: not an image"),
        (blank_picture(), "the picture: no digit found"),
    ],
)
def test_bytes_without_a_digit_are_refused_and_nothing_is_filed(tmp_path, data, message):
    with pytest.raises(ImageError, match=message):
        file_picture(data, 4, tmp_path / "own")
    assert files_under(tmp_path) == []


def test_a_picture_already_filed_under_another_label_is_refused(tmp_path):
    filed = file_picture(drawn_digit(1), 1, tmp_path / "own")
    with pytest.raises(OwnPictureError, match=f"{filed}: this picture is already filed as a 1"):
        file_picture(drawn_digit(1), 7, tmp_path / "own")
    assert files_under(tmp_path / "own") == [filed]


def test_digits_add_files_each_image_and_prints_where(tmp_path, capsys):
    images = []
    for variant in range(2):
        images.append(tmp_path / f"mine-{variant}.png")
        images[-1].write_bytes(drawn_digit(7, variant))
    with pytest.raises(SystemExit) as exited:
        main(["add", *map(str, images), "--label", "7", "--own-dir", str(tmp_path / "own")])
    assert exited.value.code == 0
    filed = files_under(tmp_path / "own")
    assert [path.parent.name for path in filed] == ["7", "7"]
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split("\t")[1] for line in lines) == sorted(map(str, filed))


def test_digits_add_names_an_image_without_a_digit(tmp_path, capsys):
    image = tmp_path / "empty.png"
    image.write_bytes(blank_picture())
    with pytest.raises(SystemExit) as exited:
        main(["add", str(image), "--label", "2", "--own-dir", str(tmp_path / "own")])
    assert exited.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {image}: no digit found (")
    assert err[1:] == ["error: 1 of 1 pictures could not be filed"]
    assert not (tmp_path / "own").exists()


def test_digits_add_files_the_good_pictures_around_a_bad_one(tmp_path, capsys):
    first, bad, last = tmp_path / "first.png", tmp_path / "notes.txt", tmp_path / "last.png"
    first.write_bytes(drawn_digit(7, 0))
    bad.write_text("not a picture")
    last.write_bytes(drawn_digit(7, 1))
    with pytest.raises(SystemExit) as exited:
        main(["add", str(first), str(bad), str(last), "--label", "7", "--own-dir", str(tmp_path)])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(first), str(last)]
    assert len(files_under(tmp_path / "7")) == 2
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith(f"error: {bad}: not an image")
    assert errors[1:] == ["error: 1 of 3 pictures could not be filed"]


def test_digits_add_outside_a_project_files_nothing(tmp_path, monkeypatch, capsys):
    """It used to make ./data/own wherever it ran and suggest `dvc add` there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seven.png").write_bytes(drawn_digit(7))
    with pytest.raises(SystemExit) as exited:
        main(["add", "seven.png", "--label", "7"])
    assert exited.value.code == 1
    assert "or give --own-dir" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seven.png"]


def test_the_split_draws_about_the_test_fraction_and_the_seed_redraws_it():
    pictures = [drawn_digit(digit, variant) for digit in range(10) for variant in range(12)]
    sides = [split_of(data, 0.3, 42) for data in pictures]
    assert 0.15 < sides.count("test") / len(sides) < 0.45  # 120 draws of a 30 % chance
    assert [split_of(data, 0.3, 7) for data in pictures] != sides  # the seed redraws it
    assert {split_of(data, 0.0, 42) for data in pictures} == {"train"}


def test_pictures_are_read_as_predict_sees_them_labelled_by_their_folder(tmp_path):
    own = tmp_path / "own"
    filed = own_pictures(own, per_class=3)
    splits = read_own_pictures(own, STOP)
    assert len(splits["train"][0]) + len(splits["test"][0]) == len(filed)
    for split in ("train", "test"):
        frames, labels = splits[split]
        assert frames.dtype == np.uint8 and frames.shape[1:] == (28, 28)
        expected = [p for p in files_under(own) if split_of(p.read_bytes(), 0.3, 42) == split]
        assert labels.tolist() == [int(path.parent.name) for path in expected]
        for frame, path in zip(frames, expected, strict=True):
            np.testing.assert_array_equal(frame, picture_frame(path))


def test_the_split_of_old_pictures_does_not_change_when_more_are_added(tmp_path):
    own = tmp_path / "own"
    own_pictures(own, per_class=2)
    before = read_own_pictures(own, STOP)
    for digit in range(10):
        file_picture(drawn_digit(digit, variant=5), digit, own)
    after = read_own_pictures(own, STOP)
    for split in ("train", "test"):
        old = {frame.tobytes() for frame in before[split][0]}
        new = {frame.tobytes() for frame in after[split][0]}
        assert old <= new
    assert len(after["train"][0]) + len(after["test"][0]) == 30


def bad_pictures(own: Path) -> dict[Path, str]:
    """Pictures the own stage cannot use, each with what its message says."""
    (own / "3").mkdir(parents=True, exist_ok=True)
    (own / "seven").mkdir()
    bad = {
        own / "3" / "notes.txt": "not an image",
        own / "3" / "blank.png": "no digit found",
        own / "seven" / "a.png": "folder 'seven' is not a label",
        own / "loose.png": "not in a label folder",
    }
    for path in bad:
        path.write_bytes(blank_picture() if "blank" in path.name else drawn_digit(7))
    (own / "3" / "notes.txt").write_text("my notes")
    return bad


def test_a_bad_picture_stops_the_stage_naming_it(tmp_path):
    own = tmp_path / "own"
    own_pictures(own, per_class=1)
    for path, problem in sorted(bad_pictures(own).items()):  # the order the stage reads them
        with pytest.raises(OwnPictureError) as raised:
            read_own_pictures(own, STOP)
        message = str(raised.value)
        assert message.startswith(f"{path}: ") and problem in message
        assert message.endswith("fix or remove it, or set own.bad_pictures: skip")
        path.unlink()
    read_own_pictures(own, STOP)


def test_with_skip_each_bad_picture_is_one_warning_line_and_left_out(tmp_path, caplog):
    own = tmp_path / "own"
    own_pictures(own, per_class=1)
    bad = bad_pictures(own)
    with caplog.at_level(logging.WARNING, logger="own"):
        splits = read_own_pictures(own, SKIP)
    assert len(splits["train"][0]) + len(splits["test"][0]) == 10
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == len(bad)
    for path, problem in bad.items():
        assert any(w.startswith(f"warning: {path}: ") and problem in w for w in warnings)


def test_a_picture_deeper_in_a_label_folder_has_that_label(tmp_path):
    own = tmp_path / "own"
    (own / "7" / "phone").mkdir(parents=True)
    (own / "7" / "phone" / "a.png").write_bytes(drawn_digit(7))
    splits = read_own_pictures(own, STOP)
    assert np.concatenate([splits["train"][1], splits["test"][1]]).tolist() == [7]


def test_hidden_files_are_not_pictures(tmp_path):
    own = tmp_path / "own"
    own_pictures(own, per_class=1)
    (own / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (own / "4" / ".mine.png.swp").write_bytes(b"swap")
    (own / "5" / ".thumbnails").mkdir()
    (own / "5" / ".thumbnails" / "x.png").write_bytes(b"thumb")
    splits = read_own_pictures(own, STOP)
    assert len(splits["train"][0]) + len(splits["test"][0]) == 10


def test_only_pictures_dvc_tracks_are_used(tmp_path, caplog):
    own = tmp_path / "own"
    untracked = {"dvc_file": f"{own}.dvc", "md5": None, "nfiles": None}
    with caplog.at_level(logging.WARNING, logger="own"):
        assert pictures_version(own) == untracked  # no data/own at all: silently none
        assert caplog.records == []
        own_pictures(own, per_class=1)
        assert pictures_version(own) == untracked
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {own} is not tracked by DVC (no {own}.dvc): its pictures are not used; "
        f"`dvc add {own}` to train with them"
    ]
    splits = read_tracked_pictures(own, untracked, STOP)
    assert [len(splits[split][0]) for split in ("train", "test")] == [0, 0]
    assert splits["train"][0].shape == (0, 28, 28) and splits["train"][1].dtype == np.uint8

    md5, nfiles = directory_md5(own)  # what `dvc add` records (the integration test checks)
    assert md5.endswith(".dir") and nfiles == 10
    (tmp_path / "own.dvc").write_text(f"outs:\n- md5: {md5}\n  nfiles: 10\n  path: own\n")
    version = pictures_version(own)
    assert version == untracked | {"md5": md5, "nfiles": 10}
    tracked = read_tracked_pictures(own, version, STOP)
    assert len(tracked["train"][0]) + len(tracked["test"][0]) == 10

    # Pictures changed since `dvc add` are not trained on: no commit could bring them back.
    extra = file_picture(drawn_digit(7, variant=1), 7, own)
    assert directory_md5(own) != (md5, 10)
    changed = f"{own}: not what {own}.dvc records (10 files, md5 {md5}; here 11 files, md5 "
    with pytest.raises(OwnPictureError, match=re.escape(changed)):
        read_tracked_pictures(own, version, STOP)
    extra.unlink()
    assert directory_md5(own) == (md5, 10)
    shutil.rmtree(own)
    with pytest.raises(OwnPictureError, match=f"{own}: missing, though {own}.dvc tracks it"):
        read_tracked_pictures(own, version, STOP)


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"[]", b"{}", b'{"md5": "x"}', b'{"dvc_file": "d", "md5": 1}']
)
def test_a_version_file_the_own_version_stage_did_not_write_is_named(data):
    message = "data/own_version.json: not what the own_version stage writes"
    with pytest.raises(OwnPictureError, match=message):
        parse_version(data, Path("data/own_version.json"))


def test_the_version_file_the_own_version_stage_writes_is_read_back():
    version = {"dvc_file": "data/own.dvc", "md5": None, "nfiles": None}
    assert parse_version(json.dumps(version).encode(), "v.json") == version


@pytest.mark.parametrize("text", ["", "outs: []\n", "outs:\n- path: other\n  md5: x\n", "[1]\n"])
def test_a_tracking_file_that_dvc_add_did_not_write_is_named(tmp_path, text):
    (tmp_path / "own.dvc").write_text(text)
    with pytest.raises(OwnPictureError, match=f"{tmp_path}/own.dvc: not the file `dvc add"):
        pictures_version(tmp_path / "own")


def test_own_train_is_mixed_in_in_order_as_many_times_as_asked():
    train = (np.zeros((5, 28, 28), np.float32), np.zeros(5, np.uint8))
    own = (np.ones((2, 28, 28), np.float32), np.array([3, 4], np.uint8))
    x, y = mix_in(train, own, count=7)
    assert x.shape == (12, 28, 28) and y.tolist() == [0] * 5 + [3, 4, 3, 4, 3, 4, 3]
    assert x[5:].min() == 1 and x[:5].max() == 0


@pytest.mark.parametrize(
    ("n_own", "share", "batch_size", "count"),
    [
        (211, 0.04, 250, 2110 + 140),  # 10 copies, then 140 more: 56,250 = 225 full batches
        (20, 0.04, 250, 2160 + 90),  # 108 copies
        (5000, 0.04, 250, 5000 + 0),  # 59,000 is 236 batches already
        (211, 0.04, 1, 2110),
        (211, 0.0, 250, 0),
        (0, 0.04, 250, 0),
    ],
)
def test_own_pictures_are_repeated_to_their_share_then_fill_the_last_batch(
    n_own, share, batch_size, count
):
    assert own_count(54_000, n_own, share, batch_size) == count
    if count:
        assert (54_000 + count) % batch_size == 0


def test_without_own_pictures_training_gets_its_arrays_untouched():
    train = (np.zeros((5, 28, 28), np.float32), np.zeros(5, np.uint8))
    no_pictures = (np.zeros((0, 28, 28), np.float32), np.zeros(0, np.uint8))
    own = (np.ones((2, 28, 28), np.float32), np.array([3, 4], np.uint8))
    assert mix_in(train, no_pictures, count=10) is train
    assert mix_in(train, own, count=0) is train


def test_empty_own_arrays_load_only_where_allowed(tmp_path):
    save_split(tmp_path, "test", np.zeros((0, 28, 28), np.float32), np.zeros(0, np.uint8))
    x, y = load_split(tmp_path, "test", stage="own", may_be_empty=True)
    assert x.shape == (0, 28, 28) and y.shape == (0,)
    with pytest.raises(DigitsError, match="hold no images; .*`dvc repro own`"):
        load_split(tmp_path, "test", stage="own")


def test_own_test_metrics_report_per_class_only_with_enough_pictures():
    actual = np.array([1] * MIN_PER_CLASS + [2] * (MIN_PER_CLASS - 1))
    predicted = actual.copy()
    predicted[0] = 7  # one 1 of five wrong
    probabilities = np.eye(10)[predicted] * 0.9 + 0.01
    metrics = metrics_on_own_test(probabilities, actual)
    n = 2 * MIN_PER_CLASS - 1
    assert metrics == {
        "accuracy": round((n - 1) / n, 6),
        "count": n,
        "errors": 1,
        "per_class_accuracy": {"1": round((MIN_PER_CLASS - 1) / MIN_PER_CLASS, 6)},
    }


# Through DVC, on the shared tiny project -------------------------------------------------------


def tracked_outputs(project: Path) -> dict[str, bytes]:
    """Every file the pipeline writes under data, metrics and plots, with its bytes (not the
    own pictures, nor what `dvc add data/own` writes)."""
    pictures = ("data/own/", "data/own.dvc", "data/.gitignore")
    return file_contents(project, ("data", "metrics", "plots"), leave_out=pictures)


@pytest.mark.integration
def test_added_pictures_are_trained_on_measured_diffed_and_undone(tiny_project):
    project, env = tiny_project
    before = tracked_outputs(project)
    filed = own_pictures(project / "data/own", per_class=2)
    n_test = sum(split_of(path.read_bytes(), 0.3, 42) == "test" for path in filed)
    assert 0 < n_test < len(filed)

    dvc(project, "add", "data/own", env=env)
    recorded = yaml.safe_load((project / "data/own.dvc").read_text())["outs"][0]
    assert directory_md5(project / "data/own") == (recorded["md5"], recorded["nfiles"])
    ran = stages_run(dvc(project, "repro", env=env).stdout)
    assert ran == [*ALWAYS_RUN, "own", "train", "evaluate"]
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    assert metrics["own_test"]["count"] == n_test
    assert set(metrics) == {"accuracy", "loss", "errors", "per_class_accuracy", "own_test"}
    table = (project / "plots/images/own_test_confusion.csv").read_text().splitlines()
    assert table[0] == "actual,predicted" and len(table) == 1 + n_test
    commit_all(project, "my pictures")

    added = json.loads(dvc(project, "diff", "--json", "HEAD~1", env=env).stdout)["added"]
    names = {entry["path"] for entry in added}
    assert {str(path.relative_to(project)) for path in filed} <= names
    changes = json.loads(dvc(project, "metrics", "diff", "--json", "HEAD~1", env=env).stdout)
    assert "own_test.count" in changes["metrics/metrics.json"]

    # A picture filed after `dvc add` stops the own stage when it next runs (then, as after any
    # failed repro, `dvc checkout --force` puts the outputs back).
    before_extra = tracked_outputs(project)
    extra = file_picture(drawn_digit(7, variant=3), 7, project / "data/own")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["own"]["test_fraction"] = 0.5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dvc(project, "repro", env=env, check=False)
    assert result.returncode != 0
    assert "error: data/own: not what data/own.dvc records (20 files" in result.stderr
    extra.unlink()
    git(project, "checkout", "-q", "--", "params.yaml")
    dvc(project, "checkout", "--force", env=env)  # as README says after a failed repro
    assert tracked_outputs(project) == before_extra

    git(project, "checkout", "-q", "HEAD~1")
    dvc(project, "checkout", env=env)
    assert tracked_outputs(project) == before
    assert not (project / "data/own").exists()  # DVC took them out; they stay in its cache
    assert stages_run(dvc(project, "repro", env=env).stdout) == ALWAYS_RUN

    # Pictures that DVC does not track are not trained on: the stage says so and uses none.
    own_pictures(project / "data/own", per_class=1)
    result = dvc(project, "repro", env=env)
    assert stages_run(result.stdout) == ALWAYS_RUN
    assert "warning: data/own is not tracked by DVC (no data/own.dvc)" in result.stderr
    assert tracked_outputs(project) == before


@pytest.mark.integration
def test_bad_pictures_are_named_skipped_or_stop_repro_changing_nothing(tiny_project):
    project, env = tiny_project
    own_pictures(project / "data/own", per_class=1)
    (project / "data/own/3/scan.png").write_bytes(b"not really a png")
    (project / "data/own/seven").mkdir()
    (project / "data/own/seven/a.png").write_bytes(drawn_digit(7))
    dvc(project, "add", "data/own", env=env)
    assert yaml.safe_load((project / "params.yaml").read_text())["own"]["bad_pictures"] == "skip"
    result = dvc(project, "repro", env=env)
    assert "warning: data/own/3/scan.png: not an image" in result.stderr
    assert "warning: data/own/seven/a.png: folder 'seven' is not a label" in result.stderr
    metrics = json.loads((project / "metrics/metrics.json").read_text())
    good = [p for p in files_under(project / "data/own") if p.parent.name.isdigit()]
    good.remove(project / "data/own/3/scan.png")
    assert len(good) == 10
    in_test = sum(split_of(p.read_bytes(), 0.3, 42) == "test" for p in good)
    assert metrics["own_test"]["count"] == in_test
    commit_all(project, "pictures, two of them bad")

    before = tracked_outputs(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["own"]["bad_pictures"] = "stop"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = dvc(project, "repro", env=env, check=False)
    assert result.returncode != 0
    assert "error: data/own/3/scan.png: not an image" in result.stderr
    dvc(project, "checkout", "--force", env=env)  # as README says after a failed repro
    assert tracked_outputs(project) == before


def test_digits_add_refuses_a_label_that_is_not_a_digit_once(tmp_path, capsys):
    image = tmp_path / "seven.png"
    image.write_bytes(drawn_digit(7))
    with pytest.raises(SystemExit) as exited:
        main(["add", str(image), str(image), "--label", "12", "--own-dir", str(tmp_path / "own")])
    assert exited.value.code == 2
    assert capsys.readouterr().err.count("argument --label: invalid choice: 12") == 1
    assert not (tmp_path / "own").exists()

"""Bounded parsing beyond YAML: label files (classes.txt, mirror_classes.txt), list files (CSV/TSV/plain,
Kinetics CSV, UCF101 split files) and the metadata JSON inside artifacts. Hypothesis feeds random and hostile
inputs to each parser: every outcome is a result or one EdgevidError, never another exception type, a hang or a
large allocation."""

import json

import pytest
from bounded import bounded_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgevid.data.datasets
import edgevid.meta
from edgevid.data.datasets import dataset_class_pairs, find_split, read_list_file
from edgevid.meta import ArtifactMeta

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
SEEN: dict[str, set] = {}


def _bounded(parser: str, fn, *args, seconds: float = 2.0, peak_mb: float = 64.0):
    """:func:`bounded_call`, recording the distinct outcomes per parser."""
    outcome = bounded_call(fn, *args, seconds=seconds, peak_mb=peak_mb)
    SEEN.setdefault(parser, set()).add(outcome[0] if outcome[0] == "ok" else outcome[1].split(":")[-1][:40])
    return outcome


LINE_CHARS = st.characters(blacklist_categories=("Cs",))
HOSTILE_TEXT = st.one_of(
    st.text(LINE_CHARS, max_size=400),
    st.lists(st.sampled_from(["path,label", "label,youtube_id,time_start,time_end,split", "a.mp4,x", "a.mp4,x,1,0",
                              "\"", "a.mp4,\"unterminated", "\x00", "# comment", "1 X", "x 99", "-1 Y",
                              "k,abc,inf,nan,train", "k,abc,1e400,2,val", "a.mp4\tx\t\t", ",", "\ufeffpath,label",
                              "a.mp4,x,1e309,1e310", "0 zero"]), max_size=12).map("\n".join),
)
HOSTILE_BYTES = st.one_of(st.binary(max_size=300), HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))


@FUZZ
@given(HOSTILE_BYTES)
def test_list_files(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("lists") / "train.csv"
    path.write_bytes(raw)
    _bounded("list file", read_list_file, path, "train")


@FUZZ
@given(HOSTILE_BYTES, st.sampled_from(["train", "val", "test", "train2", "bogus"]))
def test_ucf101_split_files(tmp_path_factory, raw, split):
    root = tmp_path_factory.mktemp("ucf")
    (root / "classInd.txt").write_bytes(raw)
    (root / "trainlist01.txt").write_bytes(raw)
    (root / "testlist01.txt").write_bytes(b"X/v_X_g01_c01.avi\n" + raw)
    _bounded("ucf101", find_split, root, split)


@FUZZ
@given(HOSTILE_BYTES)
def test_label_files(tmp_path_factory, raw):
    root = tmp_path_factory.mktemp("labels")
    (root / "train.csv").write_text("path,label\na.mp4,x\n")
    (root / "classes.txt").write_bytes(raw)
    _bounded("classes.txt", find_split, root, "train")
    (root / "classes.txt").unlink()
    (root / "mirror_classes.txt").write_bytes(raw)
    _bounded("mirror_classes.txt", lambda folder: dataset_class_pairs(folder, "mirror"), root)
    (root / "mirror_classes.txt").unlink()
    (root / "synth.json").write_bytes(raw)
    _bounded("synth.json", lambda folder: dataset_class_pairs(folder, "reverse"), root)


VALID = ArtifactMeta(model="tiny3d", classes=["a", "b"], frames=4, size=32, sampling_stride=2, mean=(0.45,) * 3,
                     std=(0.225,) * 3).to_dict()
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=20)


@st.composite
def meta_documents(draw):
    kind = draw(st.sampled_from(["random", "mutated", "text", "deep"]))
    if kind == "random":
        return json.dumps(draw(JSON))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(1, 200_000))
        return "[" * depth + "]" * depth
    doc = dict(VALID)
    for key in draw(st.lists(st.sampled_from([*sorted(VALID), "meta_version"]), max_size=4)):
        doc[key] = draw(JSON)
    return json.dumps(doc)


@FUZZ
@given(meta_documents())
def test_artifact_metadata_json(text):
    kind, result = _bounded("metadata JSON", ArtifactMeta.from_json, text, "model.onnx")
    if kind == "ok":
        assert isinstance(result, ArtifactMeta)
        assert ArtifactMeta.from_json(result.to_json()).to_json() == result.to_json()  # loads back the same


def test_oversize_inputs_are_refused_by_size(tmp_path, monkeypatch):
    monkeypatch.setattr(edgevid.data.datasets, "MAX_LIST_BYTES", 1 << 20)  # 128 MiB in use: a smaller file here
    monkeypatch.setattr(edgevid.meta, "MAX_META_CHARS", 1 << 20)
    big = tmp_path / "train.csv"
    big.write_text("path,label\n" + "a.mp4," + "x" * (2 << 20) + "\n")
    kind, message = _bounded("list file", read_list_file, big, "train", peak_mb=1)
    assert kind == "error" and message.startswith(f"{big}: 2.0 MiB is more than a list file may be (1 MiB)"), message
    kind, message = _bounded("metadata JSON", ArtifactMeta.from_json, " " * (2 << 20), "model.onnx", peak_mb=1)
    assert kind == "error" and message == "model.onnx: edgevid metadata of 2 MiB is more than 1 MiB", message


@pytest.fixture(scope="module", autouse=True)
def _outcomes():
    yield
    print("\ndistinct outcomes per parser:", {k: len(v) for k, v in SEEN.items()})

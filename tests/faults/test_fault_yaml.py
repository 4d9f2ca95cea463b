"""Bounded YAML: every YAML edgevid reads (recipes, overrides, a run's recipe.yaml) goes through one loader that
refuses alias bombs, recursive aliases, deep nesting and oversize files with one EdgevidError naming the file.

The Hypothesis tests feed random and hostile documents to the recipe parser: every outcome is a Recipe or one
EdgevidError, within a deadline and a bounded allocation."""

import time

import pytest
import yaml
from bounded import bounded_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevid.cli import main
from edgevid.errors import EdgevidError
from edgevid.train import train
from edgevid.train.recipe import Recipe, load_recipe, parse_override, parse_recipe
from edgevid.utils import safeyaml
from edgevid.utils.safeyaml import load_yaml_text

LAUGHS = """model:
  name: tiny3d
  overrides:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _few_alias_bomb(levels: int = 9, fan: int = 6) -> str:
    """Under the alias count (fan x levels <= 64) but 6^9 = 10 million nodes once expanded."""
    lines = ["model:", "  name: tiny3d", "  overrides:", '    l0: &l0 ["' + "x" * 60 + '"]']
    for i in range(1, levels + 1):
        lines.append(f"    l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, reason", [
    (LAUGHS, "more than 64 aliases"),
    (_few_alias_bomb(), "expand to more than"),
    ("model: &m {name: tiny3d, again: *m}\n", "recursive"),
    ("model: {name: tiny3d}\nx: &x [*x]\n", "recursive"),
    ("model: {name: tiny3d}\nx: [*nope]\n", "not valid YAML (line 2)"),  # an alias to no anchor
    ("model: {name: tiny3d, overrides: {d: " + "[" * 200 + "]" * 200 + "}}\n", "nested deeper"),
])
def test_hostile_recipe_files_are_refused_fast_naming_the_file(tmp_path, text, reason):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    kind, message = bounded_call(load_recipe, path, seconds=1.0, peak_mb=16)
    assert kind == "error" and message.startswith(f"{path}: ") and reason in message, message


def test_billion_laughs_through_the_cli_and_resume(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS)
    data = tmp_path / "data"
    data.mkdir()
    start = time.perf_counter()
    code = main(["train", "--recipe", str(bomb), "--data", str(data), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and time.perf_counter() - start < 5
    assert f"{bomb}: YAML refused: more than 64 aliases" in " ".join(err.split()), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # the same bomb as the recipe.yaml stored in a run: --resume reads it through the same loader
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "recipe.yaml").write_text(LAUGHS)
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(EdgevidError, match=r"recipe\.yaml: YAML refused"):
        train(None, data, out=run, resume=True)


def test_oversize_and_binary_recipe_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("model: {name: tiny3d}\n" + "# padding\n" * (safeyaml.MAX_BYTES // 10 + 1))
    with pytest.raises(EdgevidError, match=r"big\.yaml: \d+ KiB is too large for a recipe file"):
        load_recipe(big)
    binary = tmp_path / "video.yaml"
    binary.write_bytes(b"\x00\x00\x00\x18ftypmp42\xb5\xff" * 10)
    with pytest.raises(EdgevidError, match=r"video\.yaml: not a text recipe file"):
        load_recipe(binary)
    with pytest.raises(EdgevidError, match=r"is a folder, expected a recipe file"):
        load_recipe(tmp_path)


def test_override_values_are_bounded_too():
    bomb = "x=[&a [1,1,1,1,1,1,1,1], " + ", ".join(["*a"] * 70) + "]"
    with pytest.raises(EdgevidError, match="YAML refused: more than 64 aliases"):
        parse_override(bomb)
    assert parse_override("optim.lr=0.01") == (["optim", "lr"], 0.01)
    assert parse_override("data.train_split=a: b: c") == (["data", "train_split"], "a: b: c")  # bad YAML: text
    assert parse_override("x=" + "9" * 5000)[1] == "9" * 5000  # past int's digit limit: kept as text


def test_plain_aliases_and_merges_still_load(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("defaults: &d {lr: 0.01, weight_decay: 0.0}\n")
    assert load_yaml_text("a: &a {x: 1}\nb: {<<: *a, y: 2}\n", "t") == {"a": {"x": 1}, "b": {"x": 1, "y": 2}}
    recipe = load_recipe(_write(tmp_path, "model: {name: tiny3d}\noptim: &o {lr: 0.01}\n"))
    assert recipe.optim.lr == 0.01


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------- fuzzing
SCALARS = st.one_of(
    st.sampled_from(["tiny3d", "x3d_xs", "null", "~", "true", "no", "1e400", "-.inf", ".nan", "0x1f", "0o17",
                     "2020-13-45", "2001-12-14t21:59:43.10-05:00", "!!binary AAAA", "!!binary ###", "!!int x",
                     "!!python/object:os.system {}", "!!python/name:os.system", "!!set {a, b}", "!!omap [a: 1]",
                     "'quoted'", '"\\x00\\uffff"', "|\n  block", "9" * 5000, "*undefined", "&a 1", "<<", "? x"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(repr),
    st.text(max_size=12),
)
KEYS = st.sampled_from(["model", "name", "data", "optim", "train", "lr", "frames", "size", "augment", "overrides",
                        "epochs", "mean", "mirror_classes", "head", "<<", "? [1]", "1", "null", "x"])


def _node(children):
    return st.one_of(
        st.lists(children, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(KEYS, children), max_size=5).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
        st.tuples(st.sampled_from(["a", "b", "c"]), children).map(lambda t: f"&{t[0]} {t[1]}"),
        st.sampled_from(["*a", "*b", "*c"]),
    )


DOCS = st.recursive(SCALARS, _node, max_leaves=40)
RECIPE_DOCS = st.tuples(st.sampled_from(["tiny3d", "x3d_xs", "nope"]), DOCS, DOCS, DOCS).map(
    lambda t: f"model: {{name: {t[0]}, overrides: {t[1]}}}\ndata: {t[2]}\noptim: {t[3]}\n")
FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow], database=None)


def _parse_text(text):
    return parse_recipe(load_yaml_text(text, "fuzz.yaml"), "fuzz.yaml")


@FUZZ
@given(st.one_of(st.text(max_size=300), DOCS, RECIPE_DOCS))
def test_fuzz_recipe_parser_gives_a_recipe_or_one_error(text):
    kind, result = bounded_call(_parse_text, text, seconds=1.0, peak_mb=32)
    assert kind == "error" or isinstance(result, Recipe)
    if kind == "error":
        assert result.startswith("fuzz.yaml"), result


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["optim.lr", "data.frames", "model.overrides.width", "train.ema",
                                           "data.mean", "x.y", "model", "data.augment.scale"]),
                          st.one_of(SCALARS, DOCS)), max_size=4))
def test_fuzz_overrides_give_a_recipe_or_one_error(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    kind, result = bounded_call(parse_recipe, {"model": {"name": "tiny3d"}}, "base", overrides,
                                 seconds=1.0, peak_mb=32)
    assert kind == "error" or isinstance(result, Recipe)


@settings(max_examples=60, deadline=1000, database=None)
@given(st.binary(max_size=400))
def test_fuzz_recipe_files_of_random_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fz") / "r.yaml"
    path.write_bytes(raw)
    kind, result = bounded_call(load_recipe, path, seconds=1.0, peak_mb=16)
    assert kind == "error" or isinstance(result, Recipe)


def test_safe_dump_round_trip_of_every_shipped_recipe():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert parse_recipe(load_yaml_text(yaml.safe_dump(recipe.to_dict()), "again"), "again") == recipe

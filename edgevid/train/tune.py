"""Hyperparameter search over a recipe (``edgevid tune``): Optuna's TPE sampler and median pruner on real runs.

Each trial is an ordinary :func:`edgevid.train.train` run in ``OUT/trials/NNNN`` whose recipe is the base recipe
plus dotted ``key=value`` overrides (the same mechanism as ``edgevid train``'s), one per searched parameter. It
reports val top-1 after every epoch; the pruner stops trials that fall clearly behind. A trial trains with
``train.minutes`` at most its time budget (so its LR schedule ends within it) and stops after the epoch that passes
the budget. The objective is the trial's best val top-1.

The study lives in an Optuna RDB storage (``sqlite:///OUT/study.db`` by default): running the same command again
continues it, and several processes or machines given the same ``--storage`` and ``--study`` share it. The total
budget is wall-clock time during which at least one process worked on the study (each process records its own
interval in the study; overlapping intervals count once), so a resumed study only spends what is left. A trial
starts only while its whole budget is left: every trial trains for the same time, so their results compare.

After every trial ``OUT`` gets ``trials.csv``, ``tune.png`` (val top-1 per trial and the best so far) and
``best.yaml`` (the best trial's complete recipe), all written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shlex
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import yaml
from matplotlib.ticker import MaxNLocator
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from edgevid.errors import EdgevidError
from edgevid.train.engine import ensure_pretrained, train
from edgevid.train.pretrain import plan_pretraining
from edgevid.train.recipe import Recipe, load_recipe, parse_recipe
from edgevid.utils.atomic import write_text_atomic
from edgevid.utils.console import console, make_table
from edgevid.utils.interrupts import set_interrupt_hint
from edgevid.utils.plotting import pyplot, save_figure
from edgevid.utils.safeyaml import load_yaml_file

TRIAL_COLUMNS = ("trial", "state", "best_val_top1", "epochs", "minutes", "stopped", "worker", "run_dir")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_INDEXED = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<index>\d+)\]$")
_HEARTBEAT_S = 10
_WORKER = f"{socket.gethostname()}:{os.getpid()}"
# Keys that define the same thing as a searched key (a dense clip's span) and are cleared when it is searched.
_REPLACES = {"data.clip_seconds": ("data.sampling_stride", "data.reference_fps"),
             "data.sampling_stride": ("data.clip_seconds",)}


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``90s``, ``15m``, ``1.5h``; anything else is an error naming ``option``."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise EdgevidError(f"{option}: expected a positive duration like 90s, 15m or 1h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest of ``1h`` / ``15m`` / ``90s`` that :func:`parse_duration` reads back as ``seconds``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ------------------------------------------------------------------------------------------------ search space
@dataclass(frozen=True)
class Dimension:
    """One searched recipe key: ``choices`` (categorical) or a ``low``-``high`` range (int when both are ints)."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def extremes(self) -> tuple[Any, Any]:
        return (self.choices[0], self.choices[-1]) if self.choices is not None else (self.low, self.high)


def _dimension(key: str, spec: Any, source: str) -> Dimension:
    where = f"{source}: {key}"
    if isinstance(spec, list):
        if not spec:
            raise EdgevidError(f"{where}: expected a non-empty list of choices")
        return Dimension(key, choices=tuple(spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log"}:
        raise EdgevidError(f"{where}: expected a list of choices or a mapping with low, high (and log: true), "
                           f"got {spec!r}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low <= high or not isinstance(log, bool) or (log and low <= 0):
        raise EdgevidError(f"{where}: expected numbers low <= high (low > 0 with log: true), got {spec!r}")
    return Dimension(key, low=low, high=high, log=log)


def _around(value: float, factor: float) -> tuple[float, float]:
    return value / factor, value * factor


def _crop_sizes(size: int) -> tuple[int, ...]:
    """Crop sizes around the recipe's: about 3/4, 1 and 5/4 of it, in multiples of 8."""
    return tuple(sorted({max(8, round(size * f / 8) * 8) for f in (0.75, 1.0, 1.25)} | {size}))


def _span_seconds(recipe: Recipe) -> float:
    data = recipe.data
    return data.span_seconds() or data.frames * data.sampling_stride / data.fps


def default_space(recipe: Recipe) -> dict[str, Dimension]:
    """The searched keys for ``recipe`` (resolved): learning rate and weight decay (log), batch size and crop size
    (categorical around the recipe's), the span of a dense clip in seconds (``data.clip_seconds``, half to twice the
    recipe's ``frames * stride / fps``), epochs up to the recipe's (unless it trains for ``train.minutes``: then its
    time budget decides them), and the augmentation strengths."""
    data, optim, cfg = recipe.data, recipe.optim, recipe.train
    space = [
        Dimension("optim.lr", *_around(optim.lr, 10.0), log=True),
        Dimension("optim.weight_decay", *_around(optim.weight_decay or 1e-3, 10.0), log=True),
        Dimension("train.batch_size", choices=tuple(sorted({max(1, cfg.batch_size // 2), cfg.batch_size,
                                                             cfg.batch_size * 2}))),
        Dimension("data.size", choices=_crop_sizes(data.size)),
    ]
    if data.sampling == "dense":  # segments sampling spreads the frames over the whole video: no span to search
        seconds = _span_seconds(recipe)
        space.append(Dimension("data.clip_seconds", *(round(s, 4) for s in _around(seconds, 2.0))))
    if cfg.minutes is None:
        space.append(Dimension("train.epochs", max(1, cfg.epochs // 2), cfg.epochs))
    space += [
        Dimension("data.augment.scale[0]", min(0.25, data.augment.scale[1]), min(0.9, data.augment.scale[1])),
        Dimension("data.augment.stride_jitter", 0.0, 0.3),
    ]
    return {d.key: d for d in space}


def load_space(space: Mapping[str, Any] | str | Path | None, recipe: Recipe) -> dict[str, Dimension]:
    """The default space updated by ``space`` (a mapping or a YAML file of ``key: [choices]`` or ``key: {low,
    high, log}``; ``key: null`` drops a default key)."""
    dims = default_space(recipe)
    if space is None:
        return dims
    source = str(space) if isinstance(space, (str, Path)) else "space"
    entries = load_yaml_file(Path(space), "search space file") if isinstance(space, (str, Path)) else space
    if not isinstance(entries, Mapping):
        raise EdgevidError(f"{source}: expected a mapping of recipe keys (e.g. optim.lr: {{low: 1.0e-4, high: "
                           "1.0e-2, log: true}})")
    for key, spec in entries.items():
        if spec is None:
            dims.pop(str(key), None)
        else:
            dims[str(key)] = _dimension(str(key), spec, source)
    if not dims:
        raise EdgevidError(f"{source}: the search space is empty")
    return dims


def _get(recipe_dict: dict[str, Any], key: str) -> Any:
    node: Any = recipe_dict
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()


def base_params(dims: Mapping[str, Dimension], recipe: Recipe) -> dict[str, Any]:
    """The values ``recipe`` (resolved) itself has for the searched keys that the space contains: the study's first
    trial, so every search starts from the recipe it tunes and reports it beside the tuned one."""
    resolved, params = recipe.to_dict(), {}
    for key, dim in dims.items():
        match = _INDEXED.match(key)
        value = _get(resolved, match["key"] if match else key)
        if match:
            value = value[int(match["index"])] if isinstance(value, list) and int(match["index"]) < len(value) else None
        if key == "data.clip_seconds" and value is None and recipe.data.sampling == "dense":
            value = round(_span_seconds(recipe), 4)
        inside = (value in dim.choices if dim.choices is not None
                  else isinstance(value, (int, float)) and not isinstance(value, bool) and dim.low <= value <= dim.high)
        if inside:
            params[key] = value
    return params


def space_overrides(params: Mapping[str, Any], base: Recipe) -> list[str]:
    """``key=value`` overrides for the parameters of a trial; ``key[i]`` sets item ``i`` of a list key (the
    other items keep ``base``'s values)."""
    plain, lists = {}, {}
    resolved = base.resolved().to_dict()
    for name, value in params.items():
        match = _INDEXED.match(name)
        if match is None:
            plain[name] = value
            continue
        key, index = match["key"], int(match["index"])
        current = lists.setdefault(key, list(_get(resolved, key) or []))
        if index >= len(current):
            raise EdgevidError(f"search space: {name}: {key} has no item {index}")
        current[index] = value
    texts = [f"{key}={_yaml_value(value)}" for key, value in {**plain, **lists}.items()]
    raw = base.to_dict()
    for key in params:  # one definition of a clip's span: the searched one replaces the recipe's own
        texts += [f"{other}=null" for other in _REPLACES.get(key, ()) if other not in params and _get(raw, other)]
    return texts


# ------------------------------------------------------------------------------------------------ study clock
class _StudyClock:
    """Wall-clock time spent on a study by all its processes: each records its [start, now] interval in the
    study's user attributes, and overlapping intervals count once."""

    def __init__(self, study: optuna.Study, budget_s: float) -> None:
        self.study, self.budget_s = study, budget_s
        self.key = f"session:{uuid.uuid4().hex[:12]}"
        self.start = time.time()
        self.touch()

    def touch(self) -> None:
        self.study.set_user_attr(self.key, [self.start, time.time()])

    def sessions(self) -> list[tuple[str, list[float]]]:
        return sorted(((k, v) for k, v in self.study.user_attrs.items() if k.startswith("session:")),
                      key=lambda item: (item[1][0], item[0]))

    def index(self) -> int:
        """This process's place among the study's sessions (by start time): different for every process."""
        return [k for k, _ in self.sessions()].index(self.key)

    def spent(self) -> float:
        total, end = 0.0, -math.inf
        for _, (start, stop) in self.sessions():
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total

    def left(self) -> float:
        return self.budget_s - self.spent()


# ------------------------------------------------------------------------------------------------ results
@dataclass
class TuneResult:
    """A finished (or budget-stopped) tuning session: the study's trials and the files in ``out``."""

    out: Path
    study_name: str
    storage: str
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    files: dict[str, Path] = field(default_factory=dict)

    def print(self, console_=console) -> None:
        columns = ["trial", "state", "params", "best_val_top1", "epochs", "minutes"]
        rows = [{**r, "params": _short_params(r["params"])} for r in self.rows]
        console_.print(make_table(rows, columns, title=f"study {self.study_name}: {len(self.rows)} trial(s)",
                                  formats={"best_val_top1": ".1f", "minutes": ".2f"}))
        if self.best:
            console_.print(f"best: trial {self.best['trial']}, val top-1 {self.best['value']:.1f}%; recipe "
                           f"{self.files.get('best.yaml')}", highlight=False, soft_wrap=True)
        else:
            console_.print("no trial has completed yet", highlight=False)


def _short_params(params: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return " ".join(f"{key.rsplit('.', 1)[-1]}={fmt(v)}" for key, v in params.items())


def trial_rows(trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """One row per trial: number, state, params, best val top-1, epochs, minutes, why it stopped, where it ran."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = t.user_attrs
        seconds = attrs.get("seconds")
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), "params": dict(t.params),
            "best_val_top1": t.value if t.state == TrialState.COMPLETE else attrs.get("best_val_top1"),
            "epochs": attrs.get("epochs"), "minutes": None if seconds is None else seconds / 60,
            "stopped": attrs.get("stopped"), "worker": attrs.get("worker"), "run_dir": attrs.get("run_dir"),
        })
    return rows


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*TRIAL_COLUMNS, *keys])
    for r in rows:
        writer.writerow([*("" if r[c] is None else r[c] for c in TRIAL_COLUMNS),
                         *(r["params"].get(k, "") for k in keys)])
    return buffer.getvalue()


def plot_history(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Val top-1 of every trial (completed and pruned) and the best completed value so far."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for state, style in (("complete", {"marker": "o", "color": "tab:blue"}),
                         ("pruned", {"marker": "x", "color": "tab:gray"})):
        points = [(r["trial"], r["best_val_top1"]) for r in rows
                  if r["state"] == state and r["best_val_top1"] is not None]
        if points:
            ax.scatter(*zip(*points, strict=True), label=f"{state} trial", **style)
    best, steps = -math.inf, []
    for r in rows:
        if r["state"] == "complete" and r["best_val_top1"] is not None:
            best = max(best, r["best_val_top1"])
            steps.append((r["trial"], best))
    if steps:
        ax.step(*zip(*steps, strict=True), where="post", color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the points, never on them
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def _best(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def best_recipe_yaml(base: Recipe, trial: FrozenTrial, header: Sequence[str]) -> str:
    """The complete (resolved) recipe of ``trial`` with ``header`` as comment lines."""
    recipe = parse_recipe(base.to_dict(), "best trial", trial.user_attrs.get("overrides", [])).resolved()
    return "".join(f"# {line}\n" for line in header) + recipe.to_yaml()


# ------------------------------------------------------------------------------------------------ tuning
class _TrialBudget(Exception):
    """A trial's clock passed its budget (after an epoch): it ends as a completed trial."""


def startup_trials(budget_s: float, trial_budget_s: float) -> int:
    """Trials TPE draws at random before it models the results (the base recipe's trial counts as one): Optuna's 10
    for long studies, half of the trials that fit in the budget (at least 3) for short ones, which would otherwise
    end before TPE is used at all."""
    return min(10, max(3, math.ceil(budget_s / trial_budget_s) // 2))


def make_pruner(epochs: int) -> optuna.pruners.BasePruner:
    """Median pruning: once 3 trials have finished, a trial whose best val top-1 so far is below the median of the
    earlier trials' at the same epoch stops, from the first quarter of the recipe's ``epochs`` on (at least epoch
    2): a model that sits near chance for its first epochs is not judged by their noise."""
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(2, epochs // 4))


def _retry() -> RetryHeartbeatStaleTrialCallback:
    """Optuna's callback that queues a failed trial again with the same parameters (quietly: it is "experimental")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=2)


def _storage(url: str) -> RDBStorage:
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    attempts = 10
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: say nothing about it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=_HEARTBEAT_S,
                                  grace_period=3 * _HEARTBEAT_S, heartbeat_stale_trial_callback=_retry())
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
            # processes starting together race to create the tables of a new storage: the loser finds them made
            if attempt == attempts or not any(s in str(exc) for s in ("already exists", "UNIQUE", "locked")):
                raise EdgevidError(f"--storage {url}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.2 * attempt)
        except Exception as exc:  # a bad URL, a missing driver, an unreachable server
            raise EdgevidError(f"--storage {url}: {str(exc).splitlines()[0]}") from None
    raise EdgevidError(f"--storage {url}: could not be opened")


def continue_command(recipe: str | Path | Recipe, data: Path, out: Path, budget_s: float,
                     trial_budget_s: float | None, storage: str | None, study_name: str | None,
                     n_trials: int | None, space: Any, overrides: Sequence[str]) -> str:
    """The ``edgevid tune`` command line that continues this study."""
    parts = ["edgevid", "tune"]
    if isinstance(recipe, (str, Path)):
        parts += ["--recipe", str(recipe)]
    parts += ["--data", str(data), "--budget", format_duration(budget_s), "--out", str(out)]
    if trial_budget_s is not None:
        parts += ["--trial-budget", format_duration(trial_budget_s)]
    if storage:
        parts += ["--storage", storage]
    if study_name:
        parts += ["--study", study_name]
    if n_trials is not None:
        parts += ["--trials", str(n_trials)]
    if isinstance(space, (str, Path)):
        parts += ["--space", str(space)]
    return " ".join(shlex.quote(p) for p in [*parts, *overrides])


def tune(recipe: str | Path | Recipe, data: str | Path, out: str | Path | None, budget_s: float,
         trial_budget_s: float | None = None, storage: str | None = None, study_name: str | None = None,
         n_trials: int | None = None, space: Mapping[str, Any] | str | Path | None = None, seed: int = 0,
         overrides: Sequence[str] = (), device: str = "cpu",
         pruner: optuna.pruners.BasePruner | None = None) -> TuneResult:
    """Search the recipe's hyperparameters with Optuna for ``budget_s`` seconds of wall-clock time (in total over
    every process and every resumption of the study); returns the study's trials and the files written.

    ``out`` (``None``: ``runs/tune/<recipe>``) gets the trials and the files. ``trial_budget_s`` (default: a
    quarter of the budget) stops a trial after the epoch that passes it;
    ``n_trials`` caps the study's finished (completed or pruned) trials. ``storage`` (an SQLAlchemy URL, default
    ``sqlite:///OUT/study.db``) and ``study_name`` (default: the recipe's name) select the shared study.
    ``space`` updates :func:`default_space` (see :func:`load_space`); ``overrides`` change the base recipe;
    ``pruner`` replaces :func:`make_pruner`'s.
    """
    data = Path(data)
    if not data.exists():
        raise EdgevidError(f"{data}: no such data directory")
    if budget_s <= 0:
        raise EdgevidError(f"budget: must be positive, got {budget_s}")
    if trial_budget_s is not None and trial_budget_s <= 0:
        raise EdgevidError(f"trial budget: must be positive, got {trial_budget_s}")
    if n_trials is not None and n_trials < 1:
        raise EdgevidError(f"--trials: must be at least 1, got {n_trials}")
    if isinstance(recipe, Recipe):
        base, name = parse_recipe(recipe.to_dict(), "recipe", overrides), "recipe"
    else:
        base, name = load_recipe(recipe, overrides), Path(recipe).stem
    out = Path(out) if out is not None else Path("runs") / "tune" / name
    dims = load_space(space, base.resolved())
    for pick in (0, 1):  # every key and value of the space must make a valid recipe: fail now, not in a trial
        probe = {k: d.extremes()[pick] for k, d in dims.items()}
        try:
            parse_recipe(base.to_dict(), "search space", space_overrides(probe, base))
        except EdgevidError as exc:
            where = space if isinstance(space, (str, Path)) else "search space"
            raise EdgevidError(f"{where}: {exc}") from None
    plan = plan_pretraining(base.resolved())  # trained once, before the study: every trial starts from it
    pretrained = [f"model.init={ensure_pretrained(plan, device)}"] if plan else []
    trial_budget = min(trial_budget_s, budget_s) if trial_budget_s is not None else budget_s / 4
    storage_url = storage or f"sqlite:///{out / 'study.db'}"
    study_name = study_name or name
    if storage is None:  # the default storage lives in OUT
        out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=_storage(storage_url), study_name=study_name, direction="maximize",
                                load_if_exists=True, pruner=pruner or make_pruner(base.resolved().train.epochs))
    out.mkdir(parents=True, exist_ok=True)
    # processes may see the recipe and the data under other paths (other machines): the recipe itself must match
    identity = {"recipe": str(recipe) if not isinstance(recipe, Recipe) else "recipe", "data": str(data),
                "base": base.to_dict()}
    started_with = study.user_attrs.get("tune")
    if started_with is None:
        study.set_user_attr("tune", identity)
        study.enqueue_trial(base_params(dims, base.resolved()), user_attrs={"base": True})
    elif started_with.get("base") != identity["base"]:
        raise EdgevidError(f"--study {study_name} in {storage_url} tunes another recipe ({started_with['recipe']} "
                           "with its overrides) than the one given now; choose another --study or --out")
    clock = _StudyClock(study, budget_s)
    study.sampler = optuna.samplers.TPESampler(n_startup_trials=startup_trials(budget_s, trial_budget),
                                               seed=seed + 7919 * clock.index(), constant_liar=True)
    command = continue_command(recipe, data, out, budget_s, trial_budget_s, storage, study_name if storage else None,
                               n_trials, space, overrides)
    header = [f"edgevid tune: study {study_name} ({storage_url})", f"data: {data}",
              f"budget: {format_duration(budget_s)} in total, {format_duration(trial_budget)} per trial",
              f"base recipe: {identity['recipe']}"]
    running: dict[str, int] = {}

    def write_outputs() -> TuneResult:
        trials = study.get_trials(deepcopy=False)
        rows = trial_rows(trials)
        files = {"trials.csv": write_text_atomic(out / "trials.csv", _csv_text(rows))}
        files["tune.png"] = plot_history(rows, out / "tune.png", title=f"edgevid tune: {study_name}")
        best, best_info = _best(study), None
        if best is not None:
            lines = [*header, f"best trial: {best.number}, val top-1 {best.value:.1f}% "
                              f"({best.user_attrs.get('epochs')} epochs)",
                     "params: " + " ".join(best.user_attrs.get("overrides", []))]
            files["best.yaml"] = write_text_atomic(out / "best.yaml", best_recipe_yaml(base, best, lines))
            best_info = {"trial": best.number, "value": best.value, "params": dict(best.params),
                         "base": bool(best.user_attrs.get("base"))}
        return TuneResult(out, study_name, storage_url, rows, best_info, files)

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def objective(trial: optuna.Trial) -> float:
        running["trial"] = trial.number
        params = {key: dim.suggest(trial) for key, dim in dims.items()}
        searched = space_overrides(params, base)
        trial_overrides = [*overrides, *searched]
        trial_recipe = parse_recipe(base.to_dict(), f"trial {trial.number}", searched)
        run_dir = out / "trials" / f"{trial.number:04d}"
        own = trial_recipe.train.minutes  # the trial's schedule ends within its budget (not part of its recipe)
        timed = [f"train.minutes={trial_budget / 60:.6g}"] if own is None or own * 60 > trial_budget else []
        for key, value in (("overrides", trial_overrides), ("run_dir", str(run_dir)), ("worker", _WORKER),
                           ("budget_s", trial_budget)):
            trial.set_user_attr(key, value)
        origin = " (the base recipe's own values)" if trial.user_attrs.get("base") else ""
        console.print(f"[bold]trial {trial.number}[/]{origin} ({format_duration(round(trial_budget))} budget, "
                      f"{max(clock.left(), 0) / 60:.1f} min of the study's budget left): {_short_params(params)}",
                      highlight=False, soft_wrap=True)
        start, best = time.perf_counter(), None

        def on_epoch_end(row: dict[str, Any]) -> None:
            nonlocal best
            elapsed, epoch, value = time.perf_counter() - start, row["epoch"], row.get("val_top1")
            if value is not None:
                best = value if best is None else max(best, value)
                trial.report(best, epoch)
            for key, item in (("epochs", epoch), ("seconds", elapsed), ("best_val_top1", best)):
                trial.set_user_attr(key, item)
            clock.touch()
            if value is not None and trial.should_prune():
                trial.set_user_attr("stopped", "pruned")
                raise optuna.TrialPruned(f"val top-1 {best:.1f}% at epoch {epoch} is below the median")
            if elapsed > trial_budget and epoch < trial_recipe.train.epochs:
                raise _TrialBudget

        stopped = "finished"
        try:
            train(recipe, data, out=run_dir, overrides=[*trial_overrides, *pretrained, *timed], device=device,
                  on_epoch_end=on_epoch_end)
            if trial.user_attrs.get("epochs", 0) < trial_recipe.train.epochs:  # its train.minutes ended it
                stopped = "budget"
        except _TrialBudget:
            stopped = "budget"
        except RuntimeError as exc:  # e.g. out of memory at a large batch or crop: this trial fails, the study goes on
            trial.set_user_attr("error", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            raise
        trial.set_user_attr("stopped", stopped)
        if best is None:
            raise EdgevidError(f"trial {trial.number}: no epoch was validated (train.eval_every is larger than the "
                               "epochs the trial ran)")
        return best

    def study_done() -> bool:
        return clock.left() < trial_budget or (n_trials is not None and finished() >= n_trials)

    def after_trial(study_: optuna.Study, trial: FrozenTrial) -> None:
        clock.touch()
        result = write_outputs()
        best = result.best
        detail = {"complete": f"val top-1 {trial.value:.1f}%" if trial.value is not None else "",
                  "pruned": f"pruned at epoch {trial.user_attrs.get('epochs')}",
                  "fail": f"failed: {trial.user_attrs.get('error', '')}"}.get(trial.state.name.lower(), "")
        console.print(f"trial {trial.number} {detail}; best so far: "
                      + (f"{best['value']:.1f}% (trial {best['trial']})" if best else "none")
                      + f"; {max(clock.left(), 0) / 60:.1f} min left", highlight=False, soft_wrap=True)
        if study_done():
            study_.stop()

    def optimize() -> None:
        """Optuna's loop. Two workers on SQLite (no row locks) can pop the same queued trial: the first to finish
        it tells it, and the other, refused ("Cannot tell a COMPLETE trial"), goes on with the next one."""
        while True:
            try:
                study.optimize(objective, timeout=max(clock.left(), 0), callbacks=[after_trial],
                               catch=(RuntimeError,), gc_after_trial=True)
                return
            except ValueError as exc:
                if not str(exc).startswith("Cannot tell a"):
                    raise
                console.print(f"[yellow]trial {running.get('trial')} was also run and finished by another worker "
                              "of the study; going on[/]", highlight=False, soft_wrap=True)
                if study_done():
                    return

    def run() -> None:
        try:
            optimize()
        except KeyboardInterrupt:
            number = running.get("trial")
            trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
            stopped = trial is not None and trial.state == TrialState.FAIL
            if stopped:
                _retry()(study, trial)  # runs again, same parameters, on the next start
            clock.touch()
            kept = write_outputs().files
            set_interrupt_hint(_interrupt_hint(out, storage_url, finished(), number if stopped else None, kept,
                                               command))
            raise

    left = clock.left()
    if n_trials is not None and finished() >= n_trials:
        console.print(f"nothing to do: study {study_name} has {finished()} finished trial(s) (--trials "
                      f"{n_trials}); raise --trials to search longer", highlight=False, soft_wrap=True)
    elif left < trial_budget:
        console.print(f"nothing to do: study {study_name} has {format_duration(max(round(left), 0))} of its "
                      f"{format_duration(budget_s)} budget left, less than a trial's {format_duration(trial_budget)}; "
                      "raise --budget to search longer", highlight=False, soft_wrap=True)
    else:
        console.print(f"tuning {identity['recipe']} on {data}: {len(dims)} parameters, {left / 60:.1f} of "
                      f"{budget_s / 60:.1f} min left, {format_duration(trial_budget)} per trial, study "
                      f"{study_name} ({storage_url}, {len(study.trials)} trial(s) so far)", highlight=False,
                      soft_wrap=True)
        run()
    return write_outputs()


def _interrupt_hint(out: Path, storage_url: str, finished: int, stopped: int | None, files: Mapping[str, Path],
                    command: str) -> Callable[[], str]:
    def hint() -> str:
        rerun = f"trial {stopped} was stopped and runs again first; " if stopped is not None else ""
        return (f"kept {finished} finished trial(s) in {storage_url} and {out} ({', '.join(files)}); "
                f"{rerun}continue with: {command}")

    return hint

"""Every ``edgevid ...`` command example in README.md runs, in README order, at tiny sizes, and exits 0.

Each command is taken from the README's code blocks (continuation lines joined, ``$ `` prompts and trailing
``# ...`` comments dropped), then changed by :data:`SUBSTITUTIONS` (tiny data, one epoch, short timing loops) or
skipped for the reason :data:`SKIPS` gives (camera, network, GPU/TensorRT, or a long end-to-end run that another
test covers). A README command that matches neither runs as written. A quoted ``$ edgevid ...`` followed by an
``error: ...`` line must exit 1 with that line. The README's quoted ``edgevid models`` output is checked by
``tools/readme_outputs.py --check``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgevid.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TINY_RECIPE = str(ROOT / "recipes" / "tiny.yaml")
HELD_OUT = "data/val/move_up/move_up_0001.mp4"

# (regex, replacement), applied in order to every command that is run
SUBSTITUTIONS: list[tuple[str, str]] = [
    (r"recipes/(tiny|x3d_xs)\.yaml", TINY_RECIPE),  # the tiny recipe for every training example
    (r"~/videos/mydata|/data/mine", "data"),  # "your own videos": the tour's tiny synthetic data
    (r"--epochs \d+|train\.epochs=\d+", "train.epochs=1"),
    (r"data\.size=\d+", "data.size=32"),
    (r" model\.overrides\.causal=true", ""),  # the tiny recipe's Tiny3D has no causal form
    (r"videos/held_out\.mp4", HELD_OUT),
    (r"--num \d+", "--num 6"),  # calibration clips
    (r"^(edgevid bench .*)$", r"\1 --targets torch,onnx --precisions fp32 --iters 3 --warmup 1 --seconds 0.2"),
    (r"--trials \d+", "--trials 1"),
    (r"^(edgevid tune (?!.*--trials).*)$", r"\1 --trials 1"),
    (r"^edgevid models$", "edgevid models 'tiny*'"),  # every model's MACs at full size: test_quoted_outputs_...
    (r"^edgevid models --json$", "edgevid models 'tiny*' --json"),
    (r"^(edgevid prune .*)$", r"\1 --bench-iters 2 --val-clips 2"),
    (r"--budget \S+", "--budget 2m"),
    (r"--trial-budget \S+", "--trial-budget 30s"),
]

# (regex matched against the command as written in the README, why it is not run here)
SKIPS: list[tuple[str, str]] = [
    (r"^edgevid demo\b", "the whole product end to end for minutes; tests/test_demo.py runs `demo --quick`"),
    (r"--target trt\b", "TensorRT needs an NVIDIA GPU; tests/test_export_tensorrt.py covers the no-TensorRT path"),
    (r"--camera|csi://|/dev/video|rtsp://|--serve", "needs a camera, a network stream or a browser"),
    (r"runs/x3d(_causal)?\b", "a trained X3D-XS run (minutes of training); tests/test_streaming_equivalence.py "
                              "covers streaming export and live"),
    (r"--storage postgresql", "needs a PostgreSQL server"),
    (r"X3D_XS\.pyth|x3d_xs_k400\.pt|x3d_xs_finetune", "needs the published Kinetics-400 weights (network); "
                                                     "tests/test_import_weights.py covers import"),
    (r"^edgevid (eval|calib build|quantize|export|bench) runs/mine", "the tour ran it on the same tiny data and run"),
]


def readme_examples(text: str) -> list[tuple[str, str | None]]:
    """Every command of the fenced code blocks of ``text`` (lines starting ``edgevid`` in ``bash`` blocks, lines
    starting ``$ edgevid`` in others, where the rest is quoted output; continuation lines joined), each with the
    ``error: ...`` line quoted right after it, if any (the command is then expected to fail with exit 1 and that
    line)."""
    examples: list[tuple[str, str | None]] = []
    for lang, body in re.findall(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", text, re.S | re.M):
        prompt = "" if lang in ("bash", "sh", "shell") else "$ "
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1].rstrip() + " " + lines[i].strip()
            if line.startswith(prompt + "edgevid ") or line == prompt + "edgevid":
                following = lines[i + 1].strip() if prompt and i + 1 < len(lines) else ""
                examples.append((re.sub(r"\s+#.*$", "", line.removeprefix(prompt)).strip(),
                                 following if following.startswith("error: ") else None))
            i += 1
    return examples


def readme_commands(text: str) -> list[str]:
    return [command for command, _ in readme_examples(text)]


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIPS if re.search(pattern, command)), None)


def tiny(command: str) -> str:
    for pattern, replacement in SUBSTITUTIONS:
        command = re.sub(pattern, replacement, command)
    return command


def _argv(command: str) -> list[str]:
    return shlex.split(command)[1:]


def test_every_readme_command_is_run_or_skipped_for_a_stated_reason():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 30 and "edgevid data synth" in " ".join(commands)
    run = [c for c in commands if not skip_reason(c)]
    assert len(SKIPS) <= 10 and len(run) >= 20, "the skip list is meant to stay short"
    # every skip rule still matches something: a README edit cannot leave a stale reason behind
    for pattern, why in SKIPS:
        assert any(re.search(pattern, c) for c in commands), f"skip rule {pattern!r} ({why}) matches no command"


@pytest.mark.slow
def test_readme_commands_exit_0(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    timings, failures, errors = [], [], 0
    for command, error in readme_examples(README.read_text(encoding="utf-8")):
        if skip_reason(command):
            continue
        run = tiny(command)
        start = time.perf_counter()
        code = main(_argv(run))
        out = capsys.readouterr()
        timings.append((time.perf_counter() - start, run))
        printed = " ".join(out.err.split())
        if error is not None:  # an error example: exit 1 and the quoted line, word for word
            errors += 1
            if code != 1 or error not in printed:
                failures.append(f"README: `{command}`\nquotes: {error}\nexit {code}, printed: {printed[-800:]}")
        elif code != 0:
            failures.append(f"README: `{command}`\nran as: `{run}`\nexit {code}\n{out.out[-800:]}\n{out.err[-800:]}")
    with capsys.disabled():
        print("\n".join(f"{s:6.1f}s  {c}" for s, c in sorted(timings, reverse=True)[:10]))
    assert not failures, "\n\n".join(failures)
    assert len(timings) >= 20 and errors >= 2


def test_quoted_outputs_are_current():
    """The README's marker-delimited outputs are what the commands print now (regenerate with
    ``.venv/bin/python tools/readme_outputs.py``)."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "readme_outputs.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

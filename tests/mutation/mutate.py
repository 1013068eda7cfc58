"""Mutation testing of the security core with mutmut: ``make mutate`` and ``make mutate-sample``.

Line coverage says a line ran; a mutant (one operator, constant or condition changed) that no
test notices says nothing checked what the line decides. Each module listed in modules.toml is
mutated in a work directory of its own (``.mutate/<module>/``: links to ``src/`` and
``tests/`` and a pyproject.toml whose ``[tool.mutmut]`` names that module and its tests), so a
module's mutants run only against its own tests, and mutmut narrows those further to the tests
that reach the mutated function.

Prints, per module, how many mutants the tests killed and every survivor with its diff. A
survivor listed in equivalent.toml (with the changed line and the reason it cannot change
behaviour) is explained; an entry whose changed line no longer matches is reported as stale.
Exit status 1 when a module scores under 90% or a survivor is unexplained.

    python tests/mutation/mutate.py [--sample] [--jobs N] [MODULE ...]

``MODULE`` is a path or a suffix of one (``ratelimit.py``). ``--sample`` runs only the modules
marked ``sample = true``: the small fixed sample CI runs. A module entry may name ``functions``
(``Class.method`` or ``function``): then only the mutants of those are run and counted, for a
module of which only a part is a security decision (the secrets manager's delete and recover
windows).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = ROOT / ".mutate"
GOAL = 0.90
_PYTHONPATH = os.environ.get("PYTHONPATH", "")
#: Statements left alone: raising a typed error. Whether it is raised is decided by the
#: condition before it, which is mutated; the wording of its message is not a security
#: decision, and mutating it (``"XX...XX"``, upper case, ``None``) would only measure how many
#: tests pin exact wording.
NOT_MUTATED = [r"^\s*raise \w+Error\("]

#: mutmut's exit codes per mutant (mutmut.stats), folded into what a reviewer needs.
KILLED = {1, 3, 24, -24, 152, 255, 36, 37, -9, -11}  # failed, timed out, or refused to load
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Module:
    path: str
    tests: list[str]
    sample: bool = False
    deselect: str | None = None
    functions: list[str] | None = None

    @property
    def name(self) -> str:
        """The dotted module name mutmut prefixes each mutant with."""
        return self.path.removeprefix("src/").removesuffix(".py").replace("/", ".")

    def prefixes(self) -> list[str]:
        """The listed functions as mutmut names them: ``module.xǁClassǁmethod`` for a method,
        ``module.x_function`` for a function (its mutants add ``__mutmut_N``)."""
        found = []
        for function in self.functions or []:
            owner, _, method = function.rpartition(".")
            found.append(f"{self.name}." + (f"xǁ{owner}ǁ{method}" if owner else f"x_{method}"))
        return found

    def patterns(self) -> list[str]:
        """What ``mutmut run`` is given: nothing (every mutant) or a pattern per function. A
        pattern must end in ``*`` for mutmut to find the tests that reach the function too; one
        that also matches a longer name only runs a few mutants more (they are not counted)."""
        return [f"{prefix}*" for prefix in self.prefixes()]

    def counts(self, mutant: str) -> bool:
        """True if ``mutant`` is one this module's run judges."""
        prefixes = self.prefixes()
        return not prefixes or any(
            re.fullmatch(re.escape(p) + r"__mutmut_\d+", mutant) for p in prefixes
        )


@dataclass
class Equivalent:
    mutant: str
    change: str
    reason: str


@dataclass
class Outcome:
    module: Module
    seconds: float
    killed: int = 0
    equivalent: int = 0
    survivors: list[tuple[str, str, str]] = field(default_factory=list)  # name, diff, note
    error: str | None = None

    @property
    def total(self) -> int:
        return self.killed + self.equivalent + len(self.survivors)

    @property
    def score(self) -> float:
        """Killed over every mutant that could be killed (equivalent ones cannot)."""
        judged = self.total - self.equivalent
        return self.killed / judged if judged else 1.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.score >= GOAL and not self.survivors


def load_modules() -> tuple[list[Module], str]:
    config = tomllib.loads((HERE / "modules.toml").read_text("utf-8"))
    modules = [Module(**entry) for entry in config["module"]]
    return modules, config.get("deselect", "")


def load_equivalents() -> dict[str, Equivalent]:
    entries = tomllib.loads((HERE / "equivalent.toml").read_text("utf-8")).get("equivalent", [])
    return {e["mutant"]: Equivalent(**e) for e in entries}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def prepare(module: Module, deselect: str) -> Path:
    """A fresh work directory for one module: links to the sources and tests, and mutmut's
    configuration appended to the project's (pytest reads its settings from the same file)."""
    work = WORK / module.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "src").symlink_to(ROOT / "src")
    (work / "tests").symlink_to(ROOT / "tests")
    pytest_args = ["-p", "no:randomly", "-p", "no:cacheprovider", "-p", "structlog_reopen"]
    pytest_args += ["-q", "-m", "not slow"]
    deselect = deselect if module.deselect is None else module.deselect
    if deselect:
        pytest_args += ["-k", deselect]
    config = (ROOT / "pyproject.toml").read_text("utf-8")
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {_toml_list([module.path])}\n"
        f"pytest_add_cli_args = {_toml_list(pytest_args)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}\n"
        "use_git_change_detection = false\n"
        f"do_not_mutate_patterns = {_toml_list(NOT_MUTATED)}\n"
    )
    (work / "pyproject.toml").write_text(config, "utf-8")
    return work


def mutmut(work: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), _PYTHONPATH]))}
    if log is None:
        return subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, check=False
        )
    with log.open("w") as out:
        done = subprocess.run(
            command, cwd=work, env=env, stdout=out, stderr=out, text=True, check=False
        )
    return subprocess.CompletedProcess(command, done.returncode, "", "")


def changed_lines(diff: str) -> list[str]:
    return [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


#: One process prints every diff (``mutmut show`` per mutant costs a second each).
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
names = json.load(sys.stdin)
print(json.dumps({name: get_diff_for_mutant(name, path=sys.argv[1]) for name in names}))
"""


def diffs(work: Path, path: str, names: list[str]) -> dict[str, str]:
    """Each mutant's diff; through ``mutmut show`` if mutmut's internals have moved."""
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS, path],
        cwd=work,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        found: dict[str, str] = json.loads(done.stdout)
        return found
    return {n: mutmut(work, "show", n).stdout.split("\n", 1)[-1].strip() for n in names}


def judge(work: Path, outcome: Outcome, equivalents: dict[str, Equivalent]) -> None:
    meta = work / "mutants" / (outcome.module.path + ".meta")
    if not meta.exists():
        outcome.error = f"mutmut left no results (see {work / 'mutmut.log'})"
        return
    codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    codes = {name: code for name, code in codes.items() if outcome.module.counts(name)}
    left = sorted((n for n, c in codes.items() if c not in KILLED), key=_natural)
    outcome.killed = len(codes) - len(left)
    diff_of = diffs(work, outcome.module.path, left)
    for name in left:
        code, diff = codes[name], diff_of[name]
        if code in NO_TESTS:
            note = "no listed test reaches this function"
        elif code in SURVIVED:
            note = "survived"
        else:
            note = f"not judged (mutmut exit code {code})"
        known = equivalents.get(name)
        if known is not None and code in SURVIVED:
            if known.change.strip() in changed_lines(diff):
                outcome.equivalent += 1
                continue
            note = "survived; its equivalent.toml entry is stale (the changed line differs)"
        outcome.survivors.append((name, diff, note))


def _natural(name: str) -> tuple[str, int]:
    match = re.search(r"__mutmut_(\d+)$", name)
    return (name[: match.start()], int(match.group(1))) if match else (name, 0)


def run_module(
    module: Module, deselect: str, jobs: int, equivalents: dict[str, Equivalent]
) -> Outcome:
    work = prepare(module, deselect)
    started = time.monotonic()
    mutmut(work, "run", "--max-children", str(jobs), *module.patterns(), log=work / "mutmut.log")
    outcome = Outcome(module=module, seconds=time.monotonic() - started)
    judge(work, outcome, equivalents)
    return outcome


def report(outcomes: list[Outcome]) -> None:
    print()
    print("| module | mutants | killed | equivalent | survived | score | time | goal 90% |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for o in outcomes:
        verdict = "PASS" if o.passed else "MISS"
        score = "error" if o.error else f"{o.score:.1%}"
        print(
            f"| {o.module.path.removeprefix('src/strongroom/')} | {o.total} | {o.killed} | "
            f"{o.equivalent} | {len(o.survivors)} | {score} | {o.seconds:.0f} s | {verdict} |"
        )
    for o in outcomes:
        if o.error:
            print(f"\n## {o.module.path}: {o.error}")
        for name, diff, note in o.survivors:
            print(f"\n## {name}: {note}\n{diff}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("modules", nargs="*", help="module paths or suffixes (default: all)")
    parser.add_argument("--sample", action="store_true", help="only the modules marked sample")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    modules, deselect = load_modules()
    if args.sample:
        modules = [m for m in modules if m.sample]
    if args.modules:
        modules = [m for m in modules if any(m.path.endswith(s) for s in args.modules)]
        if not modules:
            parser.error("no listed module matches")
    equivalents = load_equivalents()
    outcomes = []
    for module in modules:
        print(f"mutating {module.path} against {len(module.tests)} test file(s)...", flush=True)
        outcomes.append(run_module(module, deselect, args.jobs, equivalents))
    report(outcomes)
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The wings' one-way doors, read from the code's own imports, and what a request runs."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "tabserve"
ENTRY_POINTS = ("predict.py", "train.py", "gunicorn.conf.py", "predict_client.py",
                "lambda_function.py", "score.py", "monitor.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, and the entry points (named by their file name)."""
    found = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    found.update({name: ROOT / name for name in ENTRY_POINTS})
    return found


@cache
def imports(name: str) -> frozenset[str]:
    """What a module imports anywhere in its body (at the top or inside a function)."""
    tree = ast.parse(modules()[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from tabserve.serving import predicting` imports a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in modules())
    return frozenset(found)


def reached(start: str) -> set[str]:
    """Every module `start` imports, directly or through the package's own modules (a package's
    `__init__` counts as imported with any of its modules)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for imported in imports(name):
            if imported in seen:
                continue
            seen.add(imported)
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                parent = ".".join(parts[:i])
                if parent in modules() and parent not in seen | {name}:
                    seen.add(parent)
                    todo.append(parent)
            if imported in modules():
                todo.append(imported)
    return seen


def wing(name: str) -> list[str]:
    return [m for m in modules() if m == f"tabserve.{name}" or m.startswith(f"tabserve.{name}.")]


def offenders(modules_: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for name in modules_:
        bad = sorted(m for m in reached(name) if m.split(".")[0] in forbidden
                     or any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[name] = bad
    return found


def test_the_import_reader_sees_what_it_must():
    """The reader finds a known chain, so an empty list of offenders means something."""
    assert "tabserve.serving.core" in reached("tabserve.web.app")
    assert "tabserve.model.bundle" in reached("predict.py")
    assert "flask" in reached("predict.py") and "pandas" in reached("train.py")
    assert offenders(["tabserve.web.app"], ("flask",))


def test_no_module_imports_itself_back():
    """No circle of imports between the package's modules, at the top or inside a function
    (a package's `__init__`, which gathers its modules, aside): each layer stands on the ones
    below it."""
    def below(name: str) -> set[str]:
        return {m for m in imports(name) if m in modules() and m.startswith("tabserve")
                and modules()[m].name != "__init__.py"}

    circles = []
    for start in sorted(m for m in modules() if m.startswith("tabserve")):
        seen, todo = set(), list(below(start))
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += below(name)
        if start in seen:
            circles.append(start)
    assert circles == []


def test_training_never_imports_the_web_wing_or_flask():
    assert offenders(wing("training"), ("tabserve.web", "flask", "werkzeug")) == {}


def test_batch_scoring_never_imports_the_web_or_training_wings_or_flask():
    """A file's layout and missing cells are read by `tabserve.tables`, shared with training.
    (`tabserve.spark` is the door to both Spark halves: scoring's and training's.)"""
    batch = wing("batch") + ["score.py"]
    assert offenders(batch, ("tabserve.web", "tabserve.training", "flask", "werkzeug")) == {}


def test_offline_monitoring_never_imports_the_web_or_training_wings_or_flask():
    """monitor.py counts with the serving code and reads files with the batch wing's.
    Training's model card uses the monitoring wing's plot, never the other way round."""
    monitoring = wing("monitoring") + ["monitor.py"]
    assert offenders(monitoring, ("tabserve.web", "tabserve.training", "flask",
                                  "werkzeug")) == {}
    assert {m for name in wing("training") for m in imports(name)
            if m.startswith("tabserve.monitoring")} <= {"tabserve.monitoring.plots"}


def wing_of(module: str) -> str | None:
    """`tabserve.serving.drift` → `serving`; a top-level module (`tabserve.tables`) is a wing
    of its own; None outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tabserve" and len(parts) > 1 else None


def wing_imports() -> dict[str, set[str]]:
    """Which wings each wing's modules import (anywhere in their bodies)."""
    found: dict[str, set[str]] = {}
    for name in modules():
        source = wing_of(name)
        if source is None:
            continue
        found.setdefault(source, set()).update(
            target for target in map(wing_of, imports(name)) if target not in (None, source))
    return found


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of wings, each from its first wing in sorted order (a depth-first walk)."""
    found = []

    def walk(path: list[str]) -> None:
        for after in sorted(edges.get(path[-1], ())):
            if after == path[0]:
                found.append(path)
            elif after not in path and after > path[0]:
                walk([*path, after])
    for start in sorted(edges):
        walk([start])
    return found


def test_no_wing_imports_a_wing_that_imports_it_back():
    """One-way doors: no circle of wings, however long (training → monitoring → batch →
    training was one, through training's CSV reader)."""
    assert circles(wing_imports()) == []


def test_a_circle_of_wings_would_be_seen():
    edges = {"training": {"monitoring", "model"}, "monitoring": {"batch"},
             "batch": {"training", "model"}, "model": set()}
    assert circles(edges) == [["batch", "training", "monitoring"]]
    assert "batch" in wing_imports()["monitoring"]


@pytest.mark.parametrize("name", ["model", "serving"])
def test_model_and_serving_never_import_training_or_flask(name):
    assert offenders(wing(name), ("tabserve.training", "tabserve.web", "flask", "werkzeug")) == {}


def test_the_server_never_imports_model_selection_or_plotting():
    """Our imports only: scikit-learn's own linear_model imports its model_selection."""
    assert offenders(["predict.py", "gunicorn.conf.py", "lambda_function.py"],
                     ("sklearn.model_selection", "matplotlib", "tabserve.training")) == {}


def test_only_one_module_reads_or_writes_pickles():
    """`model.pickles`: what has no data form, and the one reader, for trusted files and the
    user's own model."""
    users = sorted(name for name in modules() if {"pickle", "joblib", "cloudpickle"} & imports(name))
    assert users == ["tabserve.model.pickles"]


# the kinds only import brings, by the words their code is named with (its library, its class)
BROUGHT_KINDS = {"tabserve.model.kinds.lightgbm_trees": ("lightgbm", "lgbm"),
                 "tabserve.model.kinds.catboost_trees": ("catboost",),
                 "tabserve.model.kinds.hist_trees": ("histgradientboosting",)}


def code_words(path: Path) -> set[str]:
    """The names, attributes, imported modules and strings of a file's code, in lower case
    (its docstrings and comments aside: prose may name anything)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            words.update(alias.name for alias in node.names)
            words.add(getattr(node, "module", None) or "")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            words.add(node.value)
    return {word.lower() for word in words}


def test_a_kind_users_bring_is_named_only_in_its_module():
    """The registry (`model.kinds`) is how everything else knows LightGBM, CatBoost and
    HistGradientBoosting: their code names them nowhere but in their module."""
    offenders = {}
    for name, path in modules().items():
        words = code_words(path)
        for kind, names in BROUGHT_KINDS.items():
            if name != kind and any(n in word for word in words for n in names):
                offenders.setdefault(name, []).append(kind.rsplit(".", 1)[1])
    assert offenders == {}


def test_only_one_module_reads_or_runs_onnx_graphs():
    """`model.onnx_graph`: the checks a graph passes before onnxruntime sees it are in the one
    module that opens one."""
    users = sorted(name for name in modules() if {"onnx", "onnxruntime"} & imports(name))
    assert users == ["tabserve.model.onnx_graph"]


def environment_reads(path: Path) -> list[str]:
    """Where a file reads the process's environment: `os.environ`, `os.getenv`, `os.putenv`
    or `environ` imported from os, as `line: code`."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        reads = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id == "os" and node.attr in ("environ", "getenv", "putenv",
                                                             "environb")) or \
                (isinstance(node, ast.ImportFrom) and node.module == "os"
                 and {a.name for a in node.names} & {"environ", "getenv", "environb"})
        if reads:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_settings_module_reads_the_environment():
    """Every variable is read in tabserve/settings.py (through `environment()`), so each has
    one default and one check; tests and benchmarks set variables for the processes they
    start, and are not looked at."""
    files = [*PACKAGE.rglob("*.py"), *ROOT.glob("*.py"), *(ROOT / "notebooks").glob("*.py")]
    readers = {str(path.relative_to(ROOT)): reads for path in files
               if (reads := environment_reads(path))}
    assert set(readers) == {"tabserve/settings.py"}, readers
    # the reader sees what it must
    assert environment_reads(ROOT / "tests" / "helpers.py")


def test_the_client_script_needs_only_the_standard_library():
    """predict_client.py runs where `make run` installed only the server's packages (no
    `requests`): it imports the standard library and the settings module alone."""
    ours = {m for m in imports("predict_client.py") if m.split(".")[0] == "tabserve"}
    others = {m.split(".")[0] for m in imports("predict_client.py")} - {"tabserve", "__future__"}
    assert ours == {"tabserve.settings"} and others <= sys.stdlib_module_names, others
    assert {m.split(".")[0] for m in reached("tabserve.settings")} <= \
        sys.stdlib_module_names | {"__future__", "tabserve"}


def test_pandas_stays_out_of_serving_and_web_and_out_of_the_model_at_import():
    assert [name for name in wing("serving") + wing("web")
            if any(m.split(".")[0] == "pandas" for m in imports(name))] == []
    # the model wing reads a training-style frame (the pipeline's first step) with pandas
    # imported inside that function only, so serving never imports it from us
    top_level = {name: [node for node in ast.parse(modules()[name].read_text()).body
                        if isinstance(node, (ast.Import, ast.ImportFrom))]
                 for name in wing("model")}
    assert not [name for name, nodes in top_level.items() for node in nodes
                if "pandas" in ast.unparse(node)]


def test_the_request_path_never_calls_pandas(client, telco_record):
    """Every kind of request, traced: no function of pandas runs (a profile hook sees every
    Python and C call)."""
    import pandas

    pandas_dir = str(Path(pandas.__file__).parent)
    calls: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(pandas_dir):
            calls.append(frame.f_code.co_name)
        elif event == "c_call" and (getattr(arg, "__module__", None) or "").startswith("pandas"):
            calls.append(arg.__name__)

    requests_ = [("/predict", telco_record), ("/predict", [telco_record] * 3),
                 ("/predict", {**telco_record, "contract": " two_year", "extra": 1}),
                 ("/predict", [{**telco_record, "tenure": None}]),
                 ("/predict", {**telco_record, "tenure": "x"}),
                 ("/explain", [telco_record] * 2)]
    sys.setprofile(hook)
    try:
        statuses = [client.post(path, json=body).status_code for path, body in requests_]
        statuses.append(client.post("/v2/models/churn/infer", json={"inputs": [
            {"name": k, "shape": [1], "datatype": "BYTES", "data": [v]}
            for k, v in telco_record.items()]}).status_code)
        statuses.append(client.get("/ready").status_code)
        statuses.append(client.get("/drift").status_code)
        statuses.append(client.get("/metrics").status_code)
    finally:
        sys.setprofile(None)
    assert statuses == [200, 200, 200, 422, 422, 200, 200, 200, 200, 200]
    assert calls == []


def test_a_pandas_call_would_be_seen(client, telco_record):
    """The trace above can fail: the same hook sees a frame built from a request's records."""
    import pandas

    calls = []
    pandas_dir = str(Path(pandas.__file__).parent)

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(pandas_dir):
            calls.append(frame.f_code.co_name)

    sys.setprofile(hook)
    try:
        pandas.DataFrame([telco_record])
    finally:
        sys.setprofile(None)
    assert calls


# what each entry point runs before serving, in a fresh interpreter as its host would
SERVING_PROCESSES = {
    "gunicorn": "import runpy; runpy.run_path('gunicorn.conf.py'); import predict",
    "lambda": "import lambda_function",
}


@pytest.mark.parametrize("host", SERVING_PROCESSES)
@pytest.mark.process
def test_a_serving_process_runs_one_thread_per_native_pool(host):
    """The thread settings reach OpenBLAS and OpenMP only if set before those libraries load:
    each pool of a process that loaded the model, and later XGBoost and scikit-learn, has one
    thread (two workers on two cores would otherwise run four)."""
    # XGBoost and scikit-learn (OpenMP's users) load later, for /explain or pickled steps
    probe = (SERVING_PROCESSES[host] + "\nimport xgboost, sklearn.ensemble"
             "\nfrom threadpoolctl import threadpool_info\n"
             "print(json.dumps([(p['internal_api'], p['num_threads'])\n"
             "                  for p in threadpool_info()]))")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMP_", "OPENBLAS_", "MKL_", "PROMETHEUS_", "TABSERVE_"))}
    done = subprocess.run([sys.executable, "-c", "import json\n" + probe], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pools = json.loads(done.stdout.splitlines()[-1])
    assert {api for api, _ in pools} >= {"openblas", "openmp"}
    assert pools and all(threads == 1 for _, threads in pools), pools


@pytest.mark.process
def test_a_server_starts_and_scores_without_xgboost_scikit_learn_scipy_or_pandas():
    """Start fast: serving the shipped model (a blend with XGBoost's trees, held as arrays with
    their base margin) imports none of them to start or to answer a record or a batch; /explain
    loads XGBoost when first asked, and answers."""
    probe = """
import json, sys
from predict import app
heavy = lambda: [m for m in ("xgboost", "sklearn", "scipy", "pandas") if m in sys.modules]
client = app.test_client()
record = app.extensions["tabserve"].bundle.example
answers = [client.post("/predict", json=body).status_code for body in (record, [record] * 300)]
before = heavy()
explained = client.post("/explain", json=record).status_code
print(json.dumps([answers, before, explained, heavy()]))
"""
    env = {**os.environ, "MODEL_PATH": str(ROOT / "model.bin")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers, before, explained, after = json.loads(done.stdout.splitlines()[-1])
    assert answers == [200, 200] and before == []
    assert explained == 200 and "xgboost" in after


def test_test_modules_never_import_each_other():
    """What several test modules share lives in helpers.py (or corpus.py): importing a test
    module runs its module-level set-up again and collects its tests twice."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            imported = [n for n in names if n.split(".")[0].startswith("test_")]
            assert not imported, f"{path.name} imports {imported}"


def test_a_unit_tier_test_cannot_start_a_process():
    """This test is in the unit tier (conftest marks it), so each way to start a process is
    refused while it runs: a test that starts one cannot stay in `make test-unit`."""
    import multiprocessing

    with pytest.raises(RuntimeError, match="unit-tier test started a process"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(RuntimeError, match="unit-tier test started a process"):
        multiprocessing.get_context("spawn").Process(target=print).start()
    with pytest.raises(RuntimeError, match="unit-tier test started a process"):
        os.fork()


# --- the architecture page names what exists ---------------------------------------------------

def repository_paths() -> set[str]:
    """Every file of the working tree, and every folder on their paths (`codecs/`), leaving
    out the virtual environments, caches and git's own."""
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith((".venv", ".git"))
                         and d not in ("__pycache__", "node_modules")]
        relative = Path(folder).relative_to(ROOT)
        if str(relative) != ".":
            found.add(f"{relative}/")
        found.update(str(relative / name) for name in files)
    return found


def code_files() -> list[Path]:
    return [*modules().values(), *(ROOT / "tests" / name
                                   for name in ("conftest.py", "helpers.py", "corpus.py"))]


@cache
def definitions() -> dict[str, dict[str, set[str]]]:
    """For each module (package modules, entry points, `conftest`, `helpers`): the names it
    defines at the top (functions, classes, assignments), with each class's own names."""
    found = {}
    for path in code_files():
        name = module_name(path) if path.is_relative_to(PACKAGE) else path.stem
        if path.name in ENTRY_POINTS:
            name = path.name
        names: dict[str, set[str]] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[node.name] = set()
            elif isinstance(node, ast.ClassDef):
                names[node.name] = {n.name for n in node.body if isinstance(
                    n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))} | {
                    t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                    if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        names[target.id] = set()
        found[name] = names
    return found


@cache
def string_literals() -> frozenset[str]:
    """Every string constant in the code: the environment variables it reads, the old module
    names it maps."""
    files = [*modules().values(), *(path for path in (ROOT / "tests").glob("*.py")
                                    if path.name != Path(__file__).name)]  # not this one's
    return frozenset(node.value for path in files for node in ast.walk(
        ast.parse(path.read_text())) if isinstance(node, ast.Constant)
        and isinstance(node.value, str))


def names_a_definition(name: str) -> bool:
    """`serving.core.Predictor`, `Settings.served_model_name`, `compile_model`,
    `conftest._no_processes_for`: a module (with or without `tabserve.`) and what it defines,
    or a name (a class and its member) defined in some module."""
    parts = name.split(".")
    defined = definitions()
    for split in range(len(parts), 0, -1):
        module = ".".join(parts[:split])
        # `codecs.tensors` is `tabserve.serving.codecs.tensors`, named from within its wing
        matches = [m for m in defined if m == module or m.endswith("." + module)]
        if matches:
            rest = parts[split:]
            return any(not rest or rest[0] in defined[m] and (len(rest) == 1 or (
                len(rest) == 2 and rest[1] in defined[m][rest[0]])) for m in matches)
    if len(parts) == 1:  # a module's name, or a class's (`edges` of `FieldProfile`)
        return any(name in names or any(name in members for members in names.values())
                   for names in defined.values())
    return any(parts[0] in names and len(parts) == 2 and parts[1] in names[parts[0]]
               for names in defined.values())


def imports_as_a_module(name: str) -> bool:
    """`sklearn.model_selection`, `subprocess`: a module of the libraries the code uses."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def named_on_the_page(text: str) -> set[str]:
    """The code spans of a page that look like a file, a folder or a name in the code."""
    spans = {span.removesuffix("()") for span in re.findall(r"`([^`\n]+)`", text)}
    return {span for span in spans if re.fullmatch(r"[A-Za-z_.][\w./]*", span)}


def test_every_name_the_architecture_page_gives_exists():
    """A file or folder the repository holds, a module or what one defines, or a string the
    code reads (an environment variable, an old module's name)."""
    paths = repository_paths()
    missing = sorted(name for name in named_on_the_page(
        (ROOT / "docs" / "architecture.md").read_text())
        if not (name in paths or any(p.endswith("/" + name) for p in paths)
                or names_a_definition(name) or name in string_literals()
                or imports_as_a_module(name)))
    assert missing == [], missing


def test_the_page_checker_sees_what_is_missing():
    assert not names_a_definition("serving.scorers.compile_steps")
    assert not names_a_definition("serving.core.AnswerShape")  # imported there, defined in shape
    assert names_a_definition("serving.shape.AnswerShape")
    assert names_a_definition("Settings.served_model_name")
    assert named_on_the_page("`core.py` (`Predictor`, `GET /`, `environment()`)") == {
        "core.py", "Predictor", "environment"}

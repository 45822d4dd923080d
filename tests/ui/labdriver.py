"""Drive JupyterLab in headless Chromium: start a server, open a notebook, run it, read it.

Nothing here is pytest-specific: ``conftest.py`` wraps it in fixtures and
``test_browser.py`` asserts on what it returns.  It can also be used by hand
to look at a lesson while debugging::

    .venv/bin/python tests/ui/labdriver.py notebooks/04_batches_and_mining.ipynb
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"

# Chromium flags that work as root on these machines.  Without the
# background-networking ones Chromium keeps trying the (closed) network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

INSTALL_HINT = "install it with: sudo apt-get install chromium"


def find_chromium() -> str | None:
    """Debian's Chromium (Playwright's own browser download does not work here)."""
    override = os.environ.get("COURSE_UI_CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = find_chromium()
IN_CI = os.environ.get("CI") == "true"
MISSING_REASON = (
    "browser tests (tests/ui) skipped: no Chromium at /usr/bin/chromium or on PATH; "
    f"{INSTALL_HINT}"
)
CI_MISSING_MESSAGE = (
    "CI=true and no Chromium at /usr/bin/chromium or on PATH: the browser tests cannot run; "
    f"{INSTALL_HINT} (.ci/run does this before make test)"
)
WORK_DIR = REPO / "artifacts" / "ui-work"   # server log, generated smoke notebook


# Test-run settings (environment variables, all optional; see tests/ui/README.md)
CELLS_MODE = os.environ.get("COURSE_UI_CELLS", "all").strip().lower()
RUN_TIMEOUT = float(os.environ.get("COURSE_UI_TIMEOUT", "240"))
PARALLEL = int(os.environ.get("COURSE_UI_PARALLEL", "2"))


def run_through(path: Path) -> int | None:
    """The last cell to run: the last ``Interactive`` cell ("demos"), or None: all cells ("all")."""
    if CELLS_MODE == "all":
        return None
    cells = interactive_cells(path)
    return cells[-1] if cells else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------- server
def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# Settings that keep a run reproducible whatever the user has configured:
# no news/update prompt, no "what's new" notification, and no autosave
# (a lesson that runs longer than the autosave interval would otherwise be
# written back to notebooks/ with its outputs).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


class LabServer:
    """``jupyter lab`` from the project's .venv on a free loopback port, with a token.

    Config, data, runtime, settings and workspace directories live in
    ``state_dir`` so that a user's own Jupyter set-up cannot leak in.  The
    server runs in its own process group: :meth:`stop` ends it and every
    kernel it started (terminate, then kill).
    """

    def __init__(self, state_dir: Path, root_dir: Path = REPO, log_path: Path | None = None,
                 extra_env: dict | None = None):
        self.state_dir = Path(state_dir)
        self.root_dir = Path(root_dir)
        self.log_path = log_path or self.state_dir / "jupyterlab.log"
        self.extra_env = extra_env or {}
        self.token = secrets.token_hex(16)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- set-up
    def _environment(self) -> dict:
        d = self.state_dir
        for sub in ("config/labconfig", "data", "runtime", "workspaces", "settings"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        page_config = json.loads(json.dumps(PAGE_CONFIG))
        # COURSE_UI_DISABLE_EXTENSIONS="anywidget,@jupyter-widgets/jupyterlab-manager" breaks
        # the front end on purpose: a check that this suite notices a widget that does not render.
        for name in filter(None, os.environ.get("COURSE_UI_DISABLE_EXTENSIONS", "").split(",")):
            page_config["disabledExtensions"][name.strip()] = True
        (d / "config/labconfig/page_config.json").write_text(json.dumps(page_config))
        for name, values in LAB_SETTINGS.items():
            path = d / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTERLAB_DIR", "JUPYTER_TOKEN", "MPLBACKEND"):
            env.pop(var, None)
        env.update(
            JUPYTER_CONFIG_DIR=str(d / "config"),
            JUPYTER_DATA_DIR=str(d / "data"),
            JUPYTER_RUNTIME_DIR=str(d / "runtime"),
            JUPYTERLAB_WORKSPACES_DIR=str(d / "workspaces"),
            JUPYTERLAB_SETTINGS_DIR=str(d / "settings"),
            JUPYTER_PREFER_ENV_PATH="1",
            JUPYTER_PLATFORM_DIRS="0",
            PYTHONUNBUFFERED="1",
        )
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.extra_env)
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0, attempts: int = 3) -> "LabServer":
        env = self._environment()
        self._log = open(self.log_path, "ab")
        last_error = ""
        for _ in range(attempts):
            self.port = free_port()
            cmd = [
                str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                # fail instead of silently moving to another port
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root_dir}",
                "--ServerApp.open_browser=False",
                "--LabApp.news_url=",
                "--LabServerApp.open_browser=False",
                "--ServerApp.shutdown_no_activity_timeout=0",
                # checkpoints go to the state dir, not to notebooks/.ipynb_checkpoints
                f"--FileCheckpoints.checkpoint_dir={self.state_dir / 'checkpoints'}",
            ]
            self.proc = subprocess.Popen(
                cmd, cwd=self.root_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
            )
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError as exc:  # port taken in the meantime, or a crash
                last_error = str(exc)
                self.stop()
        raise RuntimeError(f"JupyterLab did not start: {last_error}; see {self.log_path}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}")
            try:
                status = self.api("GET", "/api/status", timeout=2)
                if "started" in status:
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"no answer on {self.url}/api/status after {timeout:.0f} s")

    # -- REST
    def api(self, method: str, path: str, timeout: float = 10):
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self, path: str | None = None) -> None:
        """Stop the kernels of notebook ``path``, or every kernel (a closed tab
        leaves its kernel running on the server)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                if path is None or session.get("path") == path:
                    self.api("DELETE", f"/api/sessions/{session['id']}")
            if path is None:
                for kernel in self.api("GET", "/api/kernels"):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")
        except (OSError, urllib.error.URLError):
            pass

    # -- tear-down
    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server's process group, kill it after ``grace`` seconds. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            # kernels are in the same process group; make sure none survives
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------- the page
# One JS snapshot of the notebook: prompts, kernel status, error outputs.
NOTEBOOK_STATE_JS = r"""
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
      .map(p => p.textContent.trim());
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const errors = [];
  for (const out of panel.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"],' +
      '.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')) {
    errors.push(out.textContent.slice(0, 2000));
  }
  for (const out of panel.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    if (/Traceback|Error:/.test(out.textContent)) errors.push(out.textContent.slice(0, 2000));
    // TensorFlow's C++ start-up log (absl / cuda probes), a red box above "your set-up works"
    else if (/absl::InitializeLog|cuda drivers|cuInit|cpu_feature_guard|^\s*[IWEF]\d{4} \d\d:\d\d:\d\d/m.test(out.textContent))
      errors.push('TensorFlow start-up log shown in the page (import course_lib first; it quiets it): '
                  + out.textContent.slice(0, 500));
  }
  for (const out of panel.querySelectorAll('.jp-OutputArea-output')) {
    const t = out.textContent;
    if (/Error displaying widget|Failed to (load|create) (model|view)|model not found/i.test(t))
      errors.push('widget did not render: ' + t.slice(0, 500));
  }
  // a widget or figure shown as its text/plain fallback: the front-end renderer is missing
  for (const out of panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="text/plain"]')) {
    const t = out.textContent.trim();
    if (/^(Interactive|VBox|HBox|FigureWidget|[A-Za-z]*Slider)\(/.test(t) || /^FigureWidget\(\{/.test(t))
      errors.push('widget shown as text, not rendered: ' + t.slice(0, 300));
  }
  for (const bad of panel.querySelectorAll('.jupyter-widgets-error-widget'))
    errors.push('widget did not render: ipywidgets shows its error widget ' +
                (bad.getAttribute('title') || bad.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 500));
  // Output elements as JupyterLab 4 renders them: plotly figures (jupyterlab-plotly's
  // mime renderer) are .jp-RenderedPlotly, widget views (jupyterlab_widgets) are an
  // lm-Panel holding .jupyter-widgets; neither carries a data-mime-type attribute.
  const plotlyOutputs = [...panel.querySelectorAll(
      '.jp-OutputArea-output.jp-RenderedPlotly,' +
      '.jp-OutputArea-output[data-mime-type="application/vnd.plotly.v1+json"]')];
  const widgetOutputs = [...panel.querySelectorAll(
      '.jp-OutputArea-output.lm-Panel,' +
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]')];
  return {
    prompts,
    busy: prompts.filter(p => p.includes('[*]')).length,
    numbered: prompts.filter(p => /\[\d+\]/.test(p)).length,
    kernel: indicator ? (indicator.getAttribute('data-status') || indicator.textContent) : null,
    errors: [...new Set(errors)],
    plotlyOutputs: plotlyOutputs.length,
    plotlyRendered: plotlyOutputs.filter(o => o.querySelector('.js-plotly-plot .main-svg')).length,
    widgetOutputs: widgetOutputs.length,
    widgetRendered: widgetOutputs.filter(o => o.querySelector(':scope > .jupyter-widgets')
                                          && !o.querySelector('.jupyter-widgets-error-widget')).length,
    figuresInWidgets: [...panel.querySelectorAll('.jupyter-widgets .js-plotly-plot')]
        .filter(p => p.querySelector('.main-svg')).length,
  };
}
"""


@dataclass
class RunResult:
    seconds: float
    expected_cells: int
    state: dict = field(default_factory=dict)
    cell_seconds: dict = field(default_factory=dict)   # code cell index -> seconds

    def slowest(self, n: int = 3) -> str:
        top = sorted(self.cell_seconds.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"code cell {i + 1}: {s:.0f} s" for i, s in top)

    @property
    def complete(self) -> bool:
        return self.state.get("numbered", 0) >= self.expected_cells and self.state.get("busy", 1) == 0

    @property
    def errors(self) -> list:
        return self.state.get("errors", [])


def notebook_cells(path: Path) -> list[tuple[str, str]]:
    """(cell_type, source) of every cell, in order."""
    nb = json.loads(Path(path).read_text())
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def code_cells(path: Path) -> list[str]:
    return [src for kind, src in notebook_cells(path) if kind == "code"]


def input_hidden(path: Path) -> list[bool]:
    """Per cell: is its source stored collapsed (``"jupyter": {"source_hidden": true}``)?

    JupyterLab replaces a collapsed input by a placeholder without the execution
    prompt, so the page cannot show whether such a cell ran; its outputs (errors
    included) stay visible.
    """
    nb = json.loads(Path(path).read_text())
    return [bool(c.get("metadata", {}).get("jupyter", {}).get("source_hidden")) for c in nb["cells"]]


CREATES_INTERACTIVE = re.compile(r"\bInteractive\(")


def interactive_cells(path: Path) -> list[int]:
    """Indices (among all cells) of the code cells that build a ``course_lib.widgets.Interactive``
    for the page: collapsed CI cells may build an undisplayed twin to test the binding."""
    hidden = input_hidden(path)
    return [i for i, ((kind, src), folded) in enumerate(zip(notebook_cells(path), hidden))
            if kind == "code" and not folded and CREATES_INTERACTIVE.search(src)]


def has_outputs(path: Path) -> bool:
    nb = json.loads(Path(path).read_text())
    return any(c.get("outputs") or c.get("execution_count") is not None
               for c in nb["cells"] if c["cell_type"] == "code")


def open_notebook(page, server: LabServer, relpath: str, timeout: float = 60_000) -> None:
    """Open ``relpath`` (relative to the server root) in a fresh, reset workspace."""
    page.goto(f"{server.url}/lab/tree/{relpath}?reset&token={server.token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout)
    accept_kernel_dialog(page)
    # the kernel is ready when the toolbar stops saying "Starting" / "Connecting"
    page.wait_for_function(
        """() => {
            const i = document.querySelector('.jp-Notebook-ExecutionIndicator');
            return i && ['idle', 'busy'].includes(i.getAttribute('data-status'));
        }""",
        timeout=timeout,
    )


def accept_kernel_dialog(page, wait_ms: int = 1500) -> bool:
    """Accept the "Select Kernel" dialog if JupyterLab shows one."""
    try:
        page.wait_for_selector(".jp-Dialog", timeout=wait_ms)
    except Exception:
        return False
    page.click(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    page.wait_for_selector(".jp-Dialog", state="detached", timeout=10_000)
    return True


def click_menu(page, menu: str, item: str) -> None:
    """Click ``menu`` in the menu bar, then the entry labelled exactly ``item``."""
    exact = re.compile(rf"^\s*{re.escape(item)}\s*$")
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^\s*{re.escape(menu)}\s*$")).first.click()
    page.locator(".lm-Menu-content .lm-Menu-itemLabel", has_text=exact).first.click()


def select_cell(page, index: int) -> None:
    """Select cell ``index`` (command mode) by clicking its prompt."""
    cell = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").first.click()


class CellRun:
    """Cells of one notebook running in one page: started from the Run menu, then polled.

    ``start`` clicks Run > Run All Cells (or, with ``through=i``, selects cell
    i + 1 and clicks Run > Run All Above Selected Cell) and returns at once:
    the kernel works on its own, so several pages can run side by side.
    ``poll`` reads the page once; ``wait`` polls until no cell is queued or
    running.  Execution that stopped on an error ends the wait early (later
    cells stay unnumbered: ``RunResult.complete`` is False).
    """

    def __init__(self, page, notebook_path: Path, through: int | None = None, timeout_s: float = 240):
        cells = notebook_cells(notebook_path)
        if through is not None and through + 1 >= len(cells):
            through = None
        last = len(cells) - 1 if through is None else through
        self.page, self.through, self.timeout_s = page, through, timeout_s
        hidden = input_hidden(notebook_path)
        # prompts are visible only for cells whose input is not collapsed (CI checks, solutions)
        self.expected = sum(1 for (kind, src), folded in zip(cells[: last + 1], hidden)
                            if kind == "code" and src.strip() and not folded)
        self.folded = sum(1 for (kind, _), folded in zip(cells[: last + 1], hidden) if kind == "code" and folded)
        self.t0 = None
        self.state, self.done_at, self.quiet_polls = {}, {}, 0
        self.result: RunResult | None = None

    def start(self) -> "CellRun":
        self.t0 = time.monotonic()
        if self.through is None:
            select_cell(self.page, 0)
            click_menu(self.page, "Run", "Run All Cells")
        else:
            select_cell(self.page, self.through + 1)
            click_menu(self.page, "Run", "Run All Above Selected Cell")
        return self

    def poll(self) -> bool:
        """Read the page once; True (and ``self.result`` set) when the run is over."""
        if self.result is not None:
            return True
        state = self.state = self.page.evaluate(NOTEBOOK_STATE_JS) or {}
        now = time.monotonic() - self.t0
        for i, prompt in enumerate(state.get("prompts", [])):
            if i not in self.done_at and "[*]" not in prompt and any(ch.isdigit() for ch in prompt):
                self.done_at[i] = now
        idle = state.get("kernel") == "idle"
        nothing_running = state.get("busy") == 0 and idle
        # stopped early (an error): nothing running, kernel idle for a few polls
        self.quiet_polls = self.quiet_polls + 1 if (nothing_running and state.get("numbered")) else 0
        # collapsed cells show no prompt: after the last visible one, wait for the kernel to stay idle
        finished = (nothing_running and state.get("numbered", 0) >= self.expected
                    and (not self.folded or self.quiet_polls >= 3))
        if finished or self.quiet_polls >= 6 or now > self.timeout_s:
            self.result = RunResult(now, self.expected, state, self._cell_seconds())
            return True
        return False

    def wait(self, others=()) -> RunResult:
        """Poll until over; ``others`` (runs in other pages) are polled too, for their timings."""
        while not self.poll():
            for other in others:
                if other is not self and other.t0 is not None:
                    other.poll()
            self.page.wait_for_timeout(500)
        return self.result

    def _cell_seconds(self) -> dict:
        # seconds per code cell (to the poll interval), from the moments prompts got their number
        cell_seconds, previous = {}, 0.0
        for i, at in sorted(self.done_at.items(), key=lambda kv: kv[1]):
            cell_seconds[i] = at - previous
            previous = at
        return cell_seconds


def run_cells(page, notebook_path: Path, through: int | None = None, timeout_s: float = 240) -> RunResult:
    """Run the cells of the open notebook and wait for the end (see :class:`CellRun`)."""
    return CellRun(page, notebook_path, through, timeout_s).start().wait()


class Lesson:
    """One notebook opened in its own browser context, with its cells running."""

    def __init__(self, path: Path, through: int | None):
        self.path, self.through = Path(path), through
        self.relpath = self.path.resolve().relative_to(REPO).as_posix()
        self.context = self.page = self.run = None
        self.opened_s = 0.0
        self.start_error: BaseException | None = None


class LessonRunner:
    """Runs lessons ahead of the tests that check them, ``parallel`` at a time.

    ``take(path)`` makes sure ``path`` and the next ``parallel - 1`` lessons of
    ``order`` are open and running, then waits for ``path`` to finish.  On a
    2-core machine two lessons overlap well: while one kernel trains, the other
    page loads, starts its kernel and imports TensorFlow (single-threaded).
    ``release(path)`` closes the page and shuts its kernel down.
    """

    def __init__(self, browser, server: LabServer, order, through=lambda path: None,
                 parallel: int = 2, timeout_s: float = 240, viewport=None, on_page=None):
        self.browser, self.server = browser, server
        self.order = [Path(p) for p in order]
        self.through, self.parallel, self.timeout_s = through, max(1, parallel), timeout_s
        self.viewport = viewport or {"width": 1400, "height": 1000}
        self.on_page = on_page
        self.lessons: dict[Path, Lesson] = {}

    def _start(self, path: Path) -> Lesson:
        lesson = self.lessons.get(path)
        if lesson is not None:
            return lesson
        lesson = self.lessons[path] = Lesson(path, self.through(path))
        try:
            lesson.context = self.browser.new_context(viewport=self.viewport)
            lesson.context.set_default_timeout(30_000)
            lesson.page = lesson.context.new_page()
            if self.on_page:
                self.on_page(lesson.page)
            t0 = time.monotonic()
            open_notebook(lesson.page, self.server, lesson.relpath)
            lesson.opened_s = time.monotonic() - t0
            lesson.run = CellRun(lesson.page, path, lesson.through, self.timeout_s).start()
        except Exception as exc:  # reported by take(), in the test of this lesson
            lesson.start_error = exc
        return lesson

    def _running(self):
        return [l.run for l in self.lessons.values() if l.run is not None and l.run.result is None]

    def take(self, path: Path) -> Lesson:
        path = Path(path)
        lesson = self._start(path)
        if path in self.order:
            i = self.order.index(path)
            in_flight = sum(1 for l in self.lessons.values() if l.context is not None)
            for nxt in self.order[i + 1:]:
                if in_flight >= self.parallel:
                    break
                if nxt not in self.lessons:
                    self._start(nxt)
                    in_flight += 1
        if lesson.start_error is not None:
            raise lesson.start_error
        lesson.run.wait(others=self._running())
        return lesson

    def release(self, path: Path) -> None:
        lesson = self.lessons.get(Path(path))
        if lesson is None or lesson.context is None:
            return
        try:
            lesson.context.close()
        except Exception:
            pass
        lesson.context = None
        self.server.shutdown_kernels(path=lesson.relpath)

    def close(self) -> None:
        for path in list(self.lessons):
            self.release(path)


# --------------------------------------------------------- pytest helpers
VIEWPORT = {"width": 1400, "height": 1000}


def failure_screenshot(page, request, folder: Path) -> None:
    """What the page showed when a test failed, scrolled to the first error output."""
    report = getattr(request.node, "ui_report_call", None)
    if report is None or not report.failed or page.is_closed():
        return
    try:
        error = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]')
        if error.count():
            error.first.scroll_into_view_if_needed(timeout=5_000)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
        page.screenshot(path=folder / f"FAILED-{name}.png", timeout=10_000)
    except Exception:  # a screenshot must never hide the real failure
        pass


def record_console_errors(page) -> None:
    """Collect the page's JS errors in ``page.console_errors`` (quoted in failure messages)."""
    page.console_errors = []
    page.on("pageerror", lambda exc: page.console_errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: page.console_errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error" else None)


# ------------------------------------------------------- interactive figures
def interactives(page):
    """The ``course_lib.widgets.Interactive`` boxes: a VBox holding a ``.course-readout``."""
    return page.locator(".jp-NotebookPanel .widget-vbox:has(> .course-readout)")


FIGURE_STATE_JS = r"""
(box) => {
  const readout = box.querySelector(':scope > .course-readout');
  const plot = box.querySelector('.js-plotly-plot');
  const traces = plot ? plot.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm, .imagelayer image, .trace') : [];
  const points = plot ? plot.querySelectorAll('.point, .scatterlayer path.js-line, .heatmaplayer image, .imagelayer image, .barlayer path') : [];
  let data = null;
  if (plot && plot.data) {
    try { data = JSON.stringify(plot.data.map(t => [t.x, t.y, t.z, t.text, t.type, t.visible])); }
    catch (e) { data = String(e); }
  }
  return {
    readout: readout ? readout.textContent.trim() : null,
    hasPlot: !!plot,
    svg: plot ? [...plot.querySelectorAll('.main-svg')].map(s => s.innerHTML).join('') : '',
    traces: traces.length,
    points: points.length,
    data,
    sliders: box.querySelectorAll('.widget-slider').length,
  };
}
"""


def wait_until_idle(page, timeout_ms: int = 20_000) -> bool:
    """Wait until the kernel is idle (the updates a control move queued are drawn); False on timeout."""
    try:
        page.wait_for_function(
            """() => {
                const i = document.querySelector('.jp-Notebook-ExecutionIndicator');
                return i && i.getAttribute('data-status') === 'idle';
            }""", timeout=timeout_ms)
    except Exception:
        return False
    page.wait_for_timeout(500)   # the last figure message reaches the page
    return True


def wait_for_traces(box, timeout_s: float = 60.0) -> dict:
    """The figure state once its traces are drawn, or as it is after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = figure_state(box)
        if state["traces"] + state["points"] > 0 or time.monotonic() > deadline:
            return state
        box.page.wait_for_timeout(500)


def figure_state(box) -> dict:
    return box.evaluate(FIGURE_STATE_JS)


def control_value(control) -> str:
    select = control.locator("select")
    if select.count():
        return select.first.evaluate("s => s.value")
    # text_content, not inner_text: off-screen cells (content-visibility: auto) have no inner text
    return (control.locator(".widget-readout").first.text_content() or "").strip()


def _change_control(control, presses: int) -> str:
    """Slider: ArrowRight (ArrowLeft at the maximum) on the focused handle. Dropdown: next option."""
    select = control.locator("select")
    if select.count():
        options = select.first.evaluate("s => [...s.options].map(o => o.value)")
        current = select.first.evaluate("s => s.value")
        target = options[(options.index(current) + 1) % len(options)]
        select.first.select_option(target)
        return f"select {target!r}"
    handle = control.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    key = "ArrowLeft" if at_max else "ArrowRight"
    handle.focus()
    for _ in range(presses):
        handle.press(key)
    return f"{presses} x {key}"


CHANGED_JS = """([box, before]) => {
  const r = box.querySelector(':scope > .course-readout');
  const p = box.querySelector('.js-plotly-plot');
  const svg = p ? [...p.querySelectorAll('.main-svg')].map(s => s.innerHTML).join('') : '';
  return (r && r.textContent.trim() !== before.readout) || svg !== before.svg;
}"""


def nudge_control(page, box, control, presses: int = 3, timeout_ms: int = 20_000) -> dict:
    """Move a slider with the keyboard (or pick the next dropdown option), and wait
    until the readout or the figure of ``box`` changes.  Returns before/after states."""
    before = figure_state(box)
    value_before = control_value(control)
    action = _change_control(control, presses)
    changed = True
    try:
        page.wait_for_function(CHANGED_JS, arg=[box.element_handle(), before], timeout=timeout_ms)
        # let the rest of an update arrive (readout and figure are separate messages)
        page.wait_for_timeout(700)
    except Exception:
        changed = False
    after = figure_state(box)
    return dict(
        action=action, value_before=value_before, value_after=control_value(control), changed=changed,
        before=before, after=after,
        readout_changed=before["readout"] != after["readout"],
        svg_changed=before["svg"] != after["svg"],
        data_changed=before["data"] != after["data"],
    )


def main(argv=None):  # pragma: no cover - a debugging aid
    import argparse
    import tempfile

    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", help="path relative to the repository root")
    parser.add_argument("--screenshot", default="artifacts/ui-screenshots/debug.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, LabServer(Path(tmp)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_notebook(page, server, args.notebook)
        result = run_cells(page, REPO / args.notebook)
        print(json.dumps({k: v for k, v in result.state.items() if k != "prompts"}, indent=1))
        print(f"ran in {result.seconds:.1f} s, complete={result.complete}")
        for i in range(interactives(page).count()):
            box = interactives(page).nth(i)
            slider = box.locator(".widget-slider, .widget-dropdown").first
            if slider.count():
                r = nudge_control(page, box, slider)
                print(i, {k: v for k, v in r.items() if k not in ("before", "after")})
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.screenshot)
        browser.close()



# ------------------------------------------------------------ smoke notebook
SMOKE_CELLS = [
    "import numpy as np\n"
    "import plotly.graph_objects as go\n"
    "from course_lib.widgets import Interactive, slider",
    "def compute(margin=0.2, n=40):\n"
    "    rng = np.random.default_rng(0)\n"
    "    d_ap, d_an = rng.uniform(0, 1, n), rng.uniform(0, 1, n)\n"
    "    loss = np.maximum(d_ap - d_an + margin, 0)\n"
    "    return dict(d_ap=d_ap, d_an=d_an, active=loss > 0, margin=margin)\n"
    "\n"
    "def draw(state):\n"
    "    a = state['active']\n"
    "    fig = go.Figure([\n"
    "        go.Scatter(x=state['d_ap'][a], y=state['d_an'][a], mode='markers', name='active'),\n"
    "        go.Scatter(x=state['d_ap'][~a], y=state['d_an'][~a], mode='markers', name='inactive'),\n"
    "    ])\n"
    "    # the title is there for small margins only: a layout key that comes and goes\n"
    "    title = f\"small margin {state['margin']:.2f}\" if state['margin'] < 0.3 else None\n"
    "    fig.update_layout(height=350, title=title)\n"
    "    return fig\n"
    "\n"
    "demo = Interactive(compute, draw, readout=lambda s: f\"active triplets: {int(s['active'].sum())}\",\n"
    "                   margin=slider(0.2, 0.0, 1.0, 0.05, 'margin m'),\n"
    "                   n=slider(40, 10, 100, 10, 'triplets', integer=True))\n"
    "demo",
    "demo.controls['margin'].value = 0.5\n"
    "assert demo.state['margin'] == 0.5\n"
    "demo.controls['margin'].value = 0.2",
]


def write_smoke_notebook(path: Path) -> Path:
    """A minimal lesson: one ``Interactive`` with two sliders and a FigureWidget.

    It checks the browser stack (JupyterLab, ipywidgets, plotly/anywidget)
    on its own, in seconds, whatever state the lessons are in.
    """
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Widget smoke test (generated by tests/ui)"}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": src}
              for src in SMOKE_CELLS]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"smoke-{i}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Speed side by side: this stack on ``make run``'s defaults against a seed-style synchronous app, in one command.

Run by hand (prints figures and the issue's targets, asserts nothing)::

    .venv/bin/python benchmarks/bench_speed.py                      # everything, model in var/
    .venv/bin/python benchmarks/bench_speed.py --var-dir /tmp/v --redis
    .venv/bin/python benchmarks/bench_speed.py --sections pipeline  # or: seed, models, threads, background, embed, web

Sections (``--sections``, all by default):

``pipeline``
    This stack as ``make run`` starts it: every ``Procfile`` line (gunicorn web, the inference worker, the jobs
    worker with beat) as a subprocess, with a fresh checkout's environment (SQLite database and the embedded
    SQLite broker, ``sneakers.broker``) in ``--var-dir``, which must hold an active model (``make run`` or
    ``manage.py bootstrap`` makes one). ``--redis`` runs it a second time with ``CELERY_BROKER_URL`` on Redis.
    Clients upload through the API with ``?wait=20`` (``POST /api/v1/predictions/?wait=20`` with a partner token;
    rates raised so throttling does not shape the figures), whose answer is the result when it is ready within
    20 s, and otherwise long-poll ``GET /api/v1/predictions/<id>/?wait=20`` until it is (as the README's API
    section says; the result page's ``static/js/poll.js`` long-polls its status the same way after the upload);
    ``--first-poll SECONDS`` polls on the older schedule instead (first poll that long after the upload, then 1.3
    times longer each time, 4 s at most). After each workload it prints the CPU used per photo by each Procfile
    line's process group (web, worker, jobs; ``/proc``) and by this script's clients.
``seed``
    The seed-style app (``benchmarks/seed_app/app.py``: Flask, GrabCut and VGG16 inside the request, VGG16
    with random weights, same FLOPs) under gunicorn with 2 processes; clients POST and get the answer back.
``models``
    Per-photo latency of the stages alone (no web, no broker), one photo at a time, in a subprocess per
    inference runtime (``--models-runtimes``: ``SNEAKERS_INFERENCE_RUNTIME`` ``openvino`` and ``native``) and
    thread count (1, then 2 threads): decode, background, embed, heads, search.
``threads``
    U^2-Net-p flat out on real-world photos in 1 or 2 processes with 1 or 2 threads each, at each input size
    of ``--threads-sizes`` (320 and 256 px) and on each of ``--threads-runtimes`` (onnxruntime, OpenVINO at
    float32 and at bfloat16), ``--threads-seconds`` each: photos/s in all and median latency (what
    ``worker.ml.occupancy``'s choice of threads rests on).
``background``
    What each way of handling the background costs in accuracy and time, on the photos of ``sneakers_wild``
    and ``sneaker_models`` (the shared sets that mark each photo real-world or product shot) of one side of the
    active model's split (``--background-side``: ``test``, the held-out photos, by default; ``all``),
    real-world and product shots apart, through the active pipeline with only the remover or its rule
    changed, one thread: brand top-1 (first guess; and counting an abstention as wrong), how often the first
    guess differs from the default's, median background time, how many photos the remover ran on. Variants
    (``--background-variants``): the serving remover (``SNEAKERS_BACKGROUND_INPUT_SIZE``) skipped on plain
    backgrounds (the default rule), the same always, the confidence cascade (``Pipeline(skip_removal_above=...)``)
    at 0.7, 0.75, 0.8, 0.85, 0.9 and 0.95, U^2-Net-p at a 320, 256, 224, 192, 160 or 128 px input
    (``U2NetpRemover(input_size=...)``), U^2-Net-p int8 (when ``--int8 FILE`` names a quantised model), the
    serving size on onnxruntime (``onnxruntime``) or on OpenVINO at bfloat16 (``bf16``), GrabCut, none.
``embed``
    Training-time embedding throughput (batches of 32 catalogue squares through the backbone, on TensorFlow and
    on OpenVINO) against the
    backbone's FLOPs per image (TensorFlow's profiler on the forward function) and the machine's measured
    peak (best of a float32 NumPy matrix product, 1 and 2 threads).
``web``
    Uploads accepted per second by the web processes alone (the ``Procfile``'s web line, embedded defaults,
    a fresh var folder, no worker): with ``wrk`` installed (``apt-get install wrk``; ``--web-client``), the same
    small JPEG uploaded for ``--web-seconds`` by each of ``--web-connections``, wrk's C client using little of
    the 2 cores; else (or ``--web-client httpx``) ``--web-uploads`` small JPEGs from ``--web-clients``
    concurrent clients (asyncio + httpx, in this process, so the clients share the 2 cores).

Workloads of ``pipeline`` and ``seed`` (same photos, same clients): ``--real`` real-world photos of
``../shared/datasets/sneakers_wild`` (its ``eyeballed_style`` column) with ``--clients`` concurrent clients,
``--catalogue`` catalogue shots of ``../shared/datasets/sneakers`` with ``--clients`` clients, and ``--single``
real-world photos one at a time. Printed per workload: photos/s (photos / wall time from the first upload to
the last answer seen), upload-to-result p50 / p90 as the client saw it (for this stack: until the read that
found it terminal) and, for this stack, until the result existed (server ``finished_at`` minus the upload's
start on this host's clock), brand top-1 against the folder's labels, and the ratios to the seed app.
This stack's section also measures its capacity, open loop: ``--catalogue`` catalogue shots uploaded back to
back by ``--clients`` clients, photos/s from the first upload to the last result (the closed loop above is paced
by the clients: each sends its next photo once it has learnt of its last result). Before the workloads
4 photos warm each stack up. ``uptime`` is printed before and after each section:
the 2 cores may be shared with other work.

Targets (issue 10), printed next to the figures: real-world throughput at least 5 times the seed app's, p50
at most 300 ms one photo at a time, catalogue shots at least 25 photos/s, at least 300 uploads/s accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
SHARED = ROOT.parent / "shared"
WILD = SHARED / "datasets" / "sneakers_wild"
CATALOGUE = SHARED / "datasets" / "sneakers"
MODELS = SHARED / "datasets" / "sneaker_models"
SECTIONS = ("pipeline", "seed", "models", "threads", "background", "embed", "web")
TARGETS = {
    "real_ratio": 5.0,
    "single_p50_ms": 300.0,
    "catalogue_per_s": 25.0,
    "web_per_s": 300.0,
}
"""Issue 10's targets: real-world photos/s ratio to the seed app, p50 one at a time, catalogue photos/s,
uploads accepted per second."""
BACKGROUND_VARIANTS = [
    "default", "always", "skip-plain", "cascade-0.7", "cascade-0.75", "cascade-0.8", "cascade-0.85", "cascade-0.9",
    "cascade-0.95",
    "u2netp-320", "u2netp-256", "u2netp-224", "u2netp-192", "u2netp-160", "u2netp-128", "int8",
    "onnxruntime", "bf16", "grabcut", "none",
]  # fmt: skip
"""Ways of handling the background that section ``background`` can compare (``--background-variants``)."""
EXTRA_ENV: dict[str, str] = {}
"""Settings given with ``--set KEY=VALUE`` for this stack's processes (to compare with a setting changed)."""


def uptime() -> str:
    """The load averages line of ``uptime`` (what else was using the cores)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- photos --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One upload: file name, bytes, the brand label of its folder's manifest."""

    name: str
    data: bytes
    brand: str


def wild_photos(style: str, count: int, *, seed: int = 0) -> list[Photo]:
    """``count`` photos of ``sneakers_wild`` whose ``eyeballed_style`` is ``style``, in a seeded order."""
    brands = {row["image_path"]: row["brand"] for row in csv.DictReader((WILD / "manifest.csv").open())}
    rows = [r for r in csv.DictReader((WILD / "extras" / "provenance.csv").open()) if r["eyeballed_style"] == style]
    random.Random(seed).shuffle(rows)
    return [
        Photo(Path(r["image_path"]).name, (WILD / r["image_path"]).read_bytes(), brands[r["image_path"]])
        for r in rows[:count]
    ]


def catalogue_photos(count: int, *, seed: int = 0) -> list[Photo]:
    """``count`` shop-listing photos of ``../shared/datasets/sneakers`` (catalogue shots), in a seeded order."""
    rows = list(csv.DictReader((CATALOGUE / "manifest.csv").open()))
    random.Random(seed).shuffle(rows)
    return [
        Photo(Path(r["image_path"]).name, (CATALOGUE / r["image_path"]).read_bytes(), r["brand"]) for r in rows[:count]
    ]


# --- results -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one photo gave: seconds from the upload's start until the client saw the answer, until the result
    existed (this stack), the status and brand answered (None when abstaining), and the worker's stage times."""

    seen_s: float
    ready_s: float | None
    ok: bool
    brand: str | None
    label: str
    timings: dict = field(default_factory=dict)


@dataclass
class Run:
    """One workload on one stack."""

    stack: str
    workload: str
    clients: int
    outcomes: list[Outcome]
    wall_s: float

    @property
    def per_s(self) -> float:
        return len(self.outcomes) / self.wall_s if self.wall_s > 0 else float("nan")

    def quantile(self, q: float, *, ready: bool = False) -> float:
        values = sorted(
            (o.ready_s if ready else o.seen_s) for o in self.outcomes if (o.ready_s if ready else o.seen_s) is not None
        )
        if not values:
            return float("nan")
        return (
            float(statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1])
            if len(values) > 1
            else values[0]
        )

    @property
    def top1(self) -> float:
        return sum(o.brand == o.label for o in self.outcomes) / max(1, len(self.outcomes))


def run_workload(stack: str, workload: str, photos: list[Photo], clients: int, one: Callable[[Photo], Outcome]) -> Run:
    """Send every photo once through ``one`` from ``clients`` threads (a closed loop: a client sends its next
    photo when it has the answer to the last)."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(one, photos))
    return Run(stack, workload, clients, outcomes, time.monotonic() - started)


def stage_medians(runs: list[Run]) -> str:
    """Median worker stage times over the runs' outcomes, e.g. ``background 120 ms, embed 45 ms``."""
    keys = ("decode", "background", "embed", "heads", "search", "total")
    parts = []
    for key in keys:
        values = [o.timings[key] for run in runs for o in run.outcomes if key in o.timings]
        if values:
            parts.append(f"{key} {statistics.median(values):.0f}")
    return ", ".join(parts) + " ms" if parts else ""


# --- this stack ----------------------------------------------------------------------------------


def stack_env(var_dir: Path, port: int, broker_url: str | None) -> dict[str, str]:
    """A fresh checkout's environment (no DATABASE_URL / CELERY_* / SNEAKERS_* / DJANGO_* from this shell)
    with the var folder, the web port, raised API rates, and ``broker_url`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "SNEAKERS_", "DJANGO_"))}
    env.update(
        PATH=f"{Path(PYTHON).parent}:{env.get('PATH', '')}",
        SNEAKERS_VAR_DIR=str(var_dir),
        SNEAKERS_BIND=f"127.0.0.1:{port}",
        SNEAKERS_API_UPLOAD_RATE="1000000/min",
        SNEAKERS_API_READ_RATE="1000000/min",
        DJANGO_LOG_LEVEL="WARNING",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    env.update(EXTRA_ENV)
    return env


def has_active_model(var_dir: Path) -> bool:
    """Whether the database of ``var_dir`` (migrated first) has an active model version."""
    if not (var_dir / "db.sqlite3").exists():
        return False
    env = stack_env(var_dir, 0, None)
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True)
    code = "from registry.selectors import model_version_get_active as m; print(bool(m()))"
    done = subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip().endswith("True")


def wait_healthy(url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


class OurStack:
    """The Procfile's processes on ``var_dir`` (see the module docstring), started and stopped."""

    def __init__(
        self, var_dir: Path, port: int, broker_url: str | None, names: tuple[str, ...] = ("web", "worker", "jobs")
    ):
        from soak import Process, procfile_lines

        self.env = stack_env(var_dir, port, broker_url)
        self.base_url = f"http://127.0.0.1:{port}"
        log_dir = var_dir / "bench-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        lines = procfile_lines(ROOT / "Procfile")
        self.processes = [Process(name, lines[name], self.env, log_dir / f"{name}.log") for name in names]
        self.token = ""

    def manage(self, *args: str) -> str:
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "--noinput")
        code = (
            "from django.contrib.auth import get_user_model as g; from accounts.services import "
            "partner_token_get_or_create as t; u, _ = g().objects.get_or_create(username='bench-speed'); "
            "print(t(user=u).key)"
        )
        self.token = self.manage("shell", "-c", code).strip().splitlines()[-1]
        from soak import refuse_busy_port

        refuse_busy_port(int(self.base_url.rsplit(":", 1)[1]))
        for process in self.processes:
            process.start()
        try:
            wait_healthy(f"{self.base_url}/healthz", 120)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def groups(self) -> dict[str, int]:
        """Process group leaders by Procfile name (each line runs in its own group: ``soak.Process``)."""
        return {process.name: process.popen.pid for process in self.processes if process.popen is not None}

    def client(self, first_poll_s: float) -> Callable[[Photo], Outcome]:
        """Upload one photo and wait for its result; returns its ``Outcome``. ``first_poll_s`` 0: long polling as
        the API docs say (``POST ...?wait=20``, whose answer is the result when it is ready within 20 s, then
        ``GET ...?wait=20`` in a loop while it is not); else the older poll schedule (first poll after
        ``first_poll_s``, then 1.3 times longer each time, 4 s at most)."""
        import httpx

        local = threading.local()

        def one(photo: Photo) -> Outcome:
            if not hasattr(local, "http"):
                local.http = httpx.Client(
                    base_url=self.base_url, headers={"Authorization": f"Token {self.token}"}, timeout=120
                )
            http = local.http
            started = time.time()
            created = http.post(
                "/api/v1/predictions/",
                params=None if first_poll_s else {"wait": 20},
                files={"image": (photo.name, photo.data, "image/jpeg")},
            )
            if created.status_code not in (201, 202):
                return Outcome(time.time() - started, None, False, None, photo.brand)
            body = created.json()
            url = f"/api/v1/predictions/{body['id']}/"
            delay = first_poll_s
            while body["status"] not in ("succeeded", "failed"):
                if first_poll_s:  # the older poll schedule, from the upload's answer on
                    time.sleep(delay)
                    delay = min(delay * 1.3, 4.0)
                body = http.get(url, params=None if first_poll_s else {"wait": 20}).json()
            seen = time.time() - started
            finished = body.get("finished_at")
            ready = datetime.fromisoformat(finished.replace("Z", "+00:00")).timestamp() - started if finished else None
            ok = body["status"] == "succeeded"
            return Outcome(
                seen, ready, ok, body.get("brand") if ok else None, photo.brand, body.get("timings_ms") or {}
            )

        return one

    def capacity(self, photos: list[Photo], clients: int) -> None:
        """Open loop: upload every photo back to back from ``clients`` threads without waiting for results, then
        wait for all; print photos/s from the first upload's start to the last result (server ``finished_at``).
        The page's polling does not pace this, so it measures what the workers can do."""
        import httpx

        headers = {"Authorization": f"Token {self.token}"}
        started = time.time()

        def send(photo: Photo) -> str:
            with httpx.Client(base_url=self.base_url, headers=headers, timeout=120) as http:
                return http.post(
                    "/api/v1/predictions/", files={"image": (photo.name, photo.data, "image/jpeg")}
                ).json()["id"]

        with ThreadPoolExecutor(max_workers=clients) as pool:
            ids = list(pool.map(send, photos))
        finished = []
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=120) as http:
            for pid in ids:
                while True:
                    body = http.get(f"/api/v1/predictions/{pid}/").json()
                    if body["status"] in ("succeeded", "failed"):
                        break
                    time.sleep(0.2)
                finished.append(datetime.fromisoformat(body["finished_at"].replace("Z", "+00:00")).timestamp())
        wall = max(finished) - started
        print(f"   capacity, {len(photos)} catalogue shots sent back to back by {clients} clients (open loop): "
              f"{len(photos) / wall:.2f} photos/s from the first upload to the last result", flush=True)  # fmt: skip


# --- the seed-style app --------------------------------------------------------------------------


class SeedApp:
    """``benchmarks/seed_app`` under gunicorn (2 sync processes)."""

    def __init__(self, port: int, log: Path):
        self.base_url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log = log
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with self.log.open("a") as out:
            self.popen = subprocess.Popen(
                [PYTHON, "-m", "gunicorn", "--chdir", str(ROOT / "benchmarks" / "seed_app"), "--workers", "2",
                 "--bind", f"127.0.0.1:{self.port}", "--timeout", "300", "app:app"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_healthy(f"{self.base_url}/healthz", 300)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=60)

    def client(self) -> Callable[[Photo], Outcome]:
        import httpx

        local = threading.local()

        def one(photo: Photo) -> Outcome:
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=self.base_url, timeout=300)
            started = time.time()
            response = local.http.post("/predict", files={"image": (photo.name, photo.data, "image/jpeg")})
            seen = time.time() - started
            body = response.json() if response.status_code == 200 else {}
            return Outcome(seen, seen, response.status_code == 200, body.get("brand"), photo.brand, {})

        return one


# --- the pipeline and seed sections ----------------------------------------------------------------


def workloads(args: argparse.Namespace) -> list[tuple[str, list[Photo], int]]:
    """``(name, photos, clients)`` of the three workloads, the same for every stack."""
    real = wild_photos("real-world", args.real + args.single, seed=1)
    return [
        (f"{args.real} real-world photos, {args.clients} clients", real[: args.real], args.clients),
        (
            f"{args.catalogue} catalogue shots, {args.clients} clients",
            catalogue_photos(args.catalogue, seed=2),
            args.clients,
        ),
        (f"{args.single} real-world photos, one at a time", real[args.real :], 1),
    ]


def warm_up(one: Callable[[Photo], Outcome]) -> None:
    """Four photos through the stack (first TensorFlow calls trace their functions)."""
    for photo in wild_photos("real-world", 2, seed=99) + catalogue_photos(2, seed=99):
        one(photo)


def bench_stack(
    label: str,
    start: Callable[[], object],
    stop: Callable[[], None],
    make_client,
    args,
    extra=None,
    groups: Callable[[], dict[str, int]] | None = None,
) -> list[Run]:
    """Start a stack, warm it up, run the three workloads (and ``extra()`` while it is up), stop it. With ``groups``
    (process group leaders by name, asked once the stack is up), each workload also prints the CPU each group and
    this script's clients used per photo (``cpu_per_photo``)."""
    print(f"\n-- {label}: starting ({uptime()})", flush=True)
    start()
    runs = []
    try:
        one = make_client()
        warm_up(one)
        leaders = groups() if groups is not None else {}
        for name, photos, clients in workloads(args):
            before = cpu_by_group(leaders)
            run = run_workload(label, name, photos, clients, one)
            runs.append(run)
            ready = run.quantile(50, ready=True)
            print(f"   {name}: {run.per_s:.2f} photos/s, p50 {run.quantile(50) * 1000:.0f} ms "
                  f"(result ready {ready * 1000:.0f} ms), p90 {run.quantile(90) * 1000:.0f} ms, "
                  f"brand top-1 {run.top1:.2f}, failed {sum(not o.ok for o in run.outcomes)}", flush=True)  # fmt: skip
            if leaders:
                print(f"     {cpu_per_photo(before, cpu_by_group(leaders), len(photos))}", flush=True)
        if extra is not None:
            extra()
    finally:
        stop()
    stages = stage_medians(runs)
    print(f"   worker stage medians: {stages}" if stages else "", f"({uptime()})", flush=True)
    return runs


def cpu_by_group(leaders: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process group (``process_stats``) and by this script (``clients``:
    the benchmark's client threads, ``time.process_time``)."""
    name_of = {leader: name for name, leader in leaders.items()}
    used = {name: 0.0 for name in leaders}
    for _, group, seconds in process_stats():
        if group in name_of:
            used[name_of[group]] += seconds
    used["clients"] = time.process_time()
    return used


def cpu_per_photo(before: dict[str, float], after: dict[str, float], photos: int) -> str:
    """``"CPU per photo: web 17.9 ms, worker 52.0 ms, ..."`` from two ``cpu_by_group`` readings around ``photos``
    photos. A process that ended in between (a jobs worker's child) drops out of the reading, so read these for
    the web and inference groups, which live through a workload."""
    parts = [f"{name} {1000 * (after[name] - before.get(name, 0.0)) / photos:.1f} ms" for name in after]
    total = sum(after[name] - before.get(name, 0.0) for name in after)
    return f"CPU per photo: {', '.join(parts)}; {1000 * total / photos:.1f} ms in all"


def print_table(all_runs: dict[str, list[Run]]) -> None:
    """The side-by-side table and the ratios to the seed app."""
    stacks = list(all_runs)
    seed = all_runs.get("seed-style app")
    print("\n== side by side (photos/s; p50 / p90 upload-to-result as the client saw it; ours also when ready) ==")
    header = "| workload | " + " | ".join(stacks) + " |"
    print(header)
    print("| --- " * (len(stacks) + 1) + "|")
    for index, run0 in enumerate(next(iter(all_runs.values()))):
        cells = []
        for stack in stacks:
            run = all_runs[stack][index]
            cell = f"{run.per_s:.2f}/s, p50 {run.quantile(50):.2f} s, p90 {run.quantile(90):.2f} s"
            if stack != "seed-style app":
                cell += f" (ready {run.quantile(50, ready=True):.2f} s)"
            if seed is not None and stack != "seed-style app":
                base = seed[index]
                cell += f"; x{run.per_s / base.per_s:.1f} throughput, x{base.quantile(50) / run.quantile(50):.1f} p50"
            cells.append(cell)
        print(f"| {run0.workload} | " + " | ".join(cells) + " |")
    ours = all_runs.get("ours, make run defaults")
    if ours is None:
        return
    print("\ntargets (issue 10), ours on make run's defaults:")
    if seed is not None:
        ratio = ours[0].per_s / seed[0].per_s
        print(f"  real-world throughput {ratio:.1f}x the seed app's (target >= {TARGETS['real_ratio']:g}x): "
              f"{'met' if ratio >= TARGETS['real_ratio'] else 'NOT met'}")  # fmt: skip
    p50, target = ours[2].quantile(50) * 1000, TARGETS["single_p50_ms"]
    print(f"  one at a time p50 {p50:.0f} ms as seen, {ours[2].quantile(50, ready=True) * 1000:.0f} ms until ready "
          f"(target <= {target:g} ms): {'met' if p50 <= target else 'NOT met'}")  # fmt: skip
    cat = ours[1].per_s
    print(f"  catalogue shots {cat:.1f} photos/s (target >= {TARGETS['catalogue_per_s']:g}): "
          f"{'met' if cat >= TARGETS['catalogue_per_s'] else 'NOT met'}")  # fmt: skip


# --- models alone ----------------------------------------------------------------------------------


def models_child(var_dir: Path, count: int) -> None:
    """(Subprocess.) Stage times of the active pipeline, one photo at a time, threads as the environment
    says; prints one JSON line."""
    os.environ["SNEAKERS_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")
    import django

    django.setup()
    from registry import runtime
    from registry.selectors import model_version_get_active

    pipeline = runtime.pipeline_get(model_version_get_active())
    photos = wild_photos("real-world", count, seed=3)
    for photo in photos[:3]:
        pipeline.predict(photo.data)
    timings: dict[str, list[float]] = {}
    for photo in photos:
        result = pipeline.predict(photo.data)
        for key, value in result.timings_ms.items():
            timings.setdefault(key, []).append(value)
    print(json.dumps({key: statistics.median(values) for key, values in timings.items()}))


def bench_models(args: argparse.Namespace) -> None:
    """Per-photo stage latency alone, 1 and 2 threads (a subprocess each)."""
    print(f"\n== models alone: {args.models_photos} real-world photos one at a time, median ms ({uptime()}) ==")
    for runtime, threads in [(runtime, threads) for runtime in args.models_runtimes for threads in (1, 2)]:
        env = {**os.environ, **EXTRA_ENV, "OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
               "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
               "SNEAKERS_INFERENCE_SHARE_CORES": "false", "SNEAKERS_INFERENCE_RUNTIME": runtime}  # fmt: skip
        env.pop("DATABASE_URL", None)
        env.pop("CELERY_BROKER_URL", None)
        done = subprocess.run(
            [PYTHON, __file__, "--_models-child", str(args.var_dir), str(args.models_photos)],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            print(f"  {runtime}, {threads} thread(s): failed\n{done.stderr[-2000:]}")
            continue
        medians = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {runtime}, {threads} thread(s): " + ", ".join(f"{k} {v:.0f}" for k, v in medians.items()))
    print(f"  ({uptime()})")


# --- processes x threads ---------------------------------------------------------------------------


THREADS_RUNTIMES = {
    "onnxruntime": {"runtime": "native"},
    "openvino": {"runtime": "openvino"},
    "openvino-bf16": {"runtime": "openvino", "precision": "bf16"},
}
"""U^2-Net-p set-ups of section ``threads`` (``--threads-runtimes``): ``U2NetpRemover`` keyword arguments."""


def _u2netp_loop(threads: int, seconds: float, size: int, runtime: str, photos: list[bytes], out) -> None:
    """(Child process.) Run U^2-Net-p (``THREADS_RUNTIMES[runtime]``) on ``photos`` in a loop for ``seconds``;
    put (count, seconds, median s)."""
    from worker.ml.background import U2NetpRemover
    from worker.ml.images import load_rgb

    decoded = [load_rgb(data) for data in photos]
    remover = U2NetpRemover(
        SHARED / "weights" / "u2netp.onnx", input_size=size, intra_op_threads=threads, **THREADS_RUNTIMES[runtime]
    )
    remover.predict_mask(decoded[0])
    latencies: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begun = time.perf_counter()
        remover.predict_mask(decoded[len(latencies) % len(decoded)])
        latencies.append(time.perf_counter() - begun)
    out.put((len(latencies), time.perf_counter() - started, statistics.median(latencies)))


def bench_threads(args: argparse.Namespace) -> None:
    """U^2-Net-p flat out in 1 or 2 processes with 1 or 2 threads each, at each ``--threads-sizes`` input."""
    import multiprocessing

    photos = [photo.data for photo in wild_photos("real-world", 20, seed=3)]
    print(f"\n== U^2-Net-p, processes x threads, {args.threads_seconds:g} s each, real-world photos ({uptime()}) ==")
    print("| runtime | input | processes x threads | photos/s in all | median latency |")
    print("| --- | --- | --- | --- | --- |")
    context = multiprocessing.get_context("spawn")
    setups = [(runtime, size) for runtime in args.threads_runtimes for size in args.threads_sizes]
    for runtime, size in setups:
        for processes, threads in ((1, 1), (1, 2), (2, 1), (2, 2)):
            out = context.Queue()
            children = [
                context.Process(target=_u2netp_loop, args=(threads, args.threads_seconds, size, runtime, photos, out))
                for _ in range(processes)
            ]
            for child in children:
                child.start()
            results = [out.get() for _ in children]
            for child in children:
                child.join()
            rate = sum(count / seconds for count, seconds, _ in results)
            median = statistics.fmean(result[2] for result in results) * 1000
            print(f"| {runtime} | {size} px | {processes} x {threads} | {rate:.2f} | {median:.0f} ms |", flush=True)
    print(f"  ({uptime()})")


# --- background variants ---------------------------------------------------------------------------


def styled_on_side(split: dict | None, side: str) -> list[tuple[str, Photo]]:
    """``(style, photo)`` of the ``sneakers_wild`` and ``sneaker_models`` photos (the two shared sets whose
    ``extras/provenance.csv`` says ``real-world`` or ``product-shot``) on ``side`` (``train``, ``val``,
    ``test``) of a version's ``split.json`` (matched by SHA-256 of the file: ``registry.evaluation``), or all of
    them for ``side == "all"``."""
    import hashlib

    from catalog.datasets import manifest_rows, provenance_styles
    from registry.evaluation import split_hashes

    wanted = None if side == "all" else split_hashes(split or {}, side)
    photos = []
    for folder in (WILD, MODELS):
        styles = provenance_styles(folder)
        for row, path in manifest_rows(folder):
            style = styles.get(row["image_path"], "")
            if style not in ("real-world", "product-shot"):
                continue  # unlabelled photos would be run and never reported
            data = path.read_bytes()
            if wanted is None or hashlib.sha256(data).hexdigest() in wanted:
                photos.append((style, Photo(f"{folder.name}/{row['image_path']}", data, row["brand"])))
    return photos


def background_child(var_dir: Path, int8: str, side: str, names: list[str]) -> None:
    """(Subprocess.) Each background variant of ``names`` (``BACKGROUND_VARIANTS``) through the active pipeline
    on the styled photos of ``side``; prints one JSON line per variant."""
    os.environ["SNEAKERS_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.files.storage import default_storage

    from registry import runtime
    from registry.selectors import model_version_get_active
    from worker.ml.background import GrabCutRemover, U2NetpRemover
    from worker.ml.images import load_rgb
    from worker.ml.pipeline import Pipeline

    version = model_version_get_active()
    base = runtime.pipeline_get(version)
    with default_storage.open(f"{version.artifact_prefix.rstrip('/')}/split.json") as handle:
        photos = styled_on_side(json.load(handle), side)
    path = settings.SNEAKERS_BACKGROUND_MODEL_PATH
    size = getattr(base.remover, "input_size", None)
    skip_plain = base.skip_plain  # the serving rule's (the model's, or SNEAKERS_BACKGROUND_RULE)
    made = {
        "default": lambda: (
            f"U^2-Net-p at {size} px, rule {base.background_rule}, cascade {base.skip_removal_above} (serving)",
            base.remover,
            skip_plain,
            base.skip_removal_above,
        ),
        "always": lambda: (f"U^2-Net-p at {size} px always", base.remover, False, None),
        "skip-plain": lambda: (f"U^2-Net-p at {size} px, skipped on plain backgrounds", base.remover, True, None),
        **{
            f"cascade-{above}": lambda above=above: (
                f"U^2-Net-p at {size} px, cascade at {above}",
                base.remover,
                skip_plain,
                above,
            )
            for above in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
        },
        **{
            f"u2netp-{px}": lambda px=px: (
                f"U^2-Net-p at {px} px",
                U2NetpRemover(path, input_size=px),
                skip_plain,
                None,
            )
            for px in (320, 256, 224, 192, 160, 128)
        },
        "int8": lambda: ("U^2-Net-p int8 at 320 px", U2NetpRemover(int8, runtime="native"), skip_plain, None),
        "onnxruntime": lambda: (
            f"U^2-Net-p at {size} px on onnxruntime",
            U2NetpRemover(path, input_size=size, runtime="native"),
            skip_plain,
            None,
        ),
        "bf16": lambda: (
            f"U^2-Net-p at {size} px, OpenVINO bfloat16",
            U2NetpRemover(path, input_size=size, runtime="openvino", precision="bf16"),
            skip_plain,
            None,
        ),
        "grabcut": lambda: ("GrabCut", GrabCutRemover(), skip_plain, None),
        "none": lambda: ("none", None, False, None),
    }
    variants = [made[name]() for name in names if name != "int8" or int8]
    decoded = [(style, photo, load_rgb(photo.data)) for style, photo in photos]
    first: dict[str, str] = {}
    for label, remover, skip_plain, cascade in variants:
        pipeline = Pipeline(base.artifact, base.backbone, remover, skip_plain=skip_plain, skip_removal_above=cascade)
        pipeline.predict_rgb(decoded[0][2])
        rows = []
        for style, photo, rgb in decoded:
            result = pipeline.predict_rgb(rgb)
            guess = result.brands[0].brand
            first.setdefault(photo.name + photo.brand, guess)
            right = guess == photo.brand
            rows.append({
                "style": style, "right": right, "answered_right": right and result.abstain is None,
                "changed": guess != first[photo.name + photo.brand], "background_ms": result.timings_ms["background"],
                "method": result.background,
            })  # fmt: skip
        print(json.dumps({"variant": label, "rows": rows}), flush=True)


def bench_background(args: argparse.Namespace) -> None:
    """Accuracy and time of each background variant (a subprocess, one thread for TensorFlow and onnxruntime)."""
    print(f"\n== background handling: sneakers_wild and sneaker_models photos ({args.background_side} side of the "
          "active model's split), "
          f"1 thread ({uptime()}) ==")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2", "SNEAKERS_INFERENCE_SHARE_CORES": "false", **EXTRA_ENV}  # fmt: skip
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    done = subprocess.run(
        [PYTHON, __file__, "--_background-child", str(args.var_dir), args.int8 or "", args.background_side,
         ",".join(args.background_variants)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        print(f"  failed\n{done.stderr[-3000:]}")
        return
    print("| variant | style | n | brand top-1 | top-1, abstaining wrong | first guess changed | "
          "background p50 / mean ms | removal ran |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for line in done.stdout.strip().splitlines():
        result = json.loads(line)
        for style in ("real-world", "product-shot"):
            rows = [r for r in result["rows"] if r["style"] == style]
            if not rows:
                continue
            ran = sum(r["method"] not in ("skipped", "skipped-confident", "none") for r in rows)
            print(f"| {result['variant']} | {style} | {len(rows)} | {sum(r['right'] for r in rows) / len(rows):.3f} | "
                  f"{sum(r['answered_right'] for r in rows) / len(rows):.3f} | {sum(r['changed'] for r in rows)} | "
                  f"{statistics.median(r['background_ms'] for r in rows):.0f} / "
                  f"{statistics.fmean(r['background_ms'] for r in rows):.0f} | {ran} |")  # fmt: skip
    print(f"  ({uptime()})")


# --- embedding throughput ---------------------------------------------------------------------------


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``n x n`` matrix product rate in GFLOP/s (2 n^3 flops) with ``threads`` BLAS threads."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def backbone_flops(backbone) -> float:
    """Floating-point operations of one forward pass at the backbone's input size (TensorFlow profiler's
    ``float_operation`` count of the frozen graph; a multiply-add counts 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    size = backbone.input_size
    function = tf.function(lambda x: backbone._model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(
        graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
    )
    return float(profile.total_float_ops)


def bench_embed(args: argparse.Namespace) -> None:
    """Images/s of batched embedding against FLOPs per image and the measured matmul peak."""
    print(f"\n== training-time embedding throughput ({uptime()}) ==")
    import numpy as np

    from worker.ml.backbone import Backbone

    backbone = Backbone(SHARED / "weights" / "efficientnet_lite0_imagenet_notop.keras", batch_size=32)
    from worker.ml.images import load_rgb

    photos = catalogue_photos(args.embed_images, seed=4)
    squares = np.stack([backbone.preprocess(load_rgb(p.data)) for p in photos])

    def embed_rates() -> list[float]:
        """Images/s of three embeddings of every square, after a warm-up batch."""
        backbone.embed(squares[:32])
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            backbone.embed(squares)
            rates.append(len(squares) / (time.perf_counter() - started))
        return rates

    rates_by_runtime = {"tensorflow": embed_rates()}
    flops = backbone_flops(backbone)
    with tempfile.TemporaryDirectory() as cache:
        backbone.serve_with("openvino", cache_dir=cache)
        rates_by_runtime["openvino"] = embed_rates()
    peaks = {threads: matmul_peak(threads) for threads in (1, 2)}
    print(f"  backbone {backbone.path.name} at {backbone.input_size} px with taps: {flops / 1e9:.2f} GFLOP per image")
    print(f"  float32 matrix product peak: {peaks[1]:.1f} GFLOP/s on 1 thread, {peaks[2]:.1f} GFLOP/s on 2")
    for runtime, runs in rates_by_runtime.items():
        rate = statistics.median(runs)
        achieved = rate * flops / 1e9
        print(f"  {runtime}: {len(squares)} catalogue squares in batches of 32: {rate:.1f} images/s (median of 3; "
              f"runs {', '.join(f'{r:.1f}' for r in runs)}) = {achieved:.1f} GFLOP/s, "
              f"{achieved / peaks[2]:.0%} of the 2-thread peak")  # fmt: skip
    print(f"  ({uptime()})")


# --- web uploads accepted ----------------------------------------------------------------------------


def bench_web(args: argparse.Namespace) -> None:
    """Uploads accepted per second by the web processes alone (fresh var folder, embedded defaults)."""
    load = "wrk" if args.web_client == "wrk" else f"{args.web_uploads} uploads from {args.web_clients} httpx clients"
    print(f"\n== web: uploads accepted on loopback, {load} ({uptime()}) ==")
    import httpx
    from bench_load import shoe_jpeg

    var_dir = Path(tempfile.mkdtemp(prefix="sneakers-bench-web-"))
    stack = OurStack(var_dir, args.port + 1, None, names=("web",))
    stack.start()
    data = [shoe_jpeg((640, 480), i) for i in range(16)]

    async def load() -> tuple[list[float], dict[int, int], float]:
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        queue: asyncio.Queue = asyncio.Queue()
        for i in range(args.web_uploads):
            queue.put_nowait(data[i % len(data)])
        limits = httpx.Limits(max_connections=args.web_clients, max_keepalive_connections=args.web_clients)
        headers = {"Authorization": f"Token {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, limits=limits, timeout=60) as http:

            async def client() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    began = time.perf_counter()
                    response = await http.post("/api/v1/predictions/", files={"image": ("s.jpg", body, "image/jpeg")})
                    latencies.append(time.perf_counter() - began)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(args.web_clients)))
            return latencies, statuses, time.perf_counter() - started

    try:
        asyncio.run(load_warm(stack, data))
        if args.web_client == "wrk":
            web_wrk(stack, data[0], args)
            return
        latencies, statuses, wall = asyncio.run(load())
    finally:
        stack.stop()
    accepted = statuses.get(202, 0)
    ms = sorted(1000 * value for value in latencies)
    print(f"  statuses {statuses}; {accepted / wall:.0f} uploads accepted per second "
          f"(target >= {TARGETS['web_per_s']:g}); latency p50 {statistics.median(ms):.0f} ms, "
          f"p95 {statistics.quantiles(ms, n=20)[-1]:.0f} ms; 640x480 JPEGs of {len(data[0]) // 1024} KB")  # fmt: skip
    print(f"  ({uptime()})")


WRK_SCRIPT = """
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. os.getenv("BOUNDARY")
wrk.headers["Authorization"] = "Token " .. os.getenv("TOKEN")
"""
"""wrk's Lua script: every request the same multipart upload, with the partner token (wrk's scripting API)."""


UPLOAD_BOUNDARY = "sneakers-bench-boundary"
"""Multipart boundary of ``multipart_upload``'s body."""


def multipart_upload(jpeg: bytes) -> bytes:
    """The body of an API upload of ``jpeg`` as ``multipart/form-data`` (field ``image``, boundary
    ``UPLOAD_BOUNDARY``; RFC 7578), for clients that send raw bytes (wrk, ``bench_upload.py``)."""
    head = (
        f'--{UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="s.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + jpeg + f"\r\n--{UPLOAD_BOUNDARY}--\r\n".encode()


def web_wrk(stack: OurStack, jpeg: bytes, args: argparse.Namespace) -> None:
    """Uploads accepted per second with ``wrk`` (a C load generator: https://github.com/wg/wrk, Debian package
    ``wrk``) as the client, so the load generator's own CPU is small: ``--web-seconds`` seconds at each of
    ``--web-connections``; prints wrk's rate and latency, its count of answers other than 2xx/3xx, and the
    web processes' CPU use in cores, in all and per process (wrk keeps its connections open, so when one gunicorn
    process accepted all of them the other does nothing: README "Speed", sixth round)."""
    folder = Path(tempfile.mkdtemp(prefix="sneakers-bench-wrk-"))
    (folder / "body.bin").write_bytes(multipart_upload(jpeg))
    (folder / "post.lua").write_text(WRK_SCRIPT)
    env = {**os.environ, "BODY_FILE": str(folder / "body.bin"), "BOUNDARY": UPLOAD_BOUNDARY, "TOKEN": stack.token}
    web_pids = [process.popen.pid for process in stack.processes if process.popen is not None]
    for connections in args.web_connections:
        before, started = process_cpu_seconds(web_pids), time.monotonic()
        done = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{args.web_seconds}s", "-s", str(folder / "post.lua"),
             f"{stack.base_url}/api/v1/predictions/"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        after, elapsed = process_cpu_seconds(web_pids), time.monotonic() - started
        per_process = sorted(((after[pid] - before.get(pid, 0.0)) / elapsed for pid in after), reverse=True)
        cores = sum(per_process)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
        latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", done.stdout)
        refused = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
        print(f"  wrk, {connections} connections, {args.web_seconds} s: "
              f"{float(rate.group(1)) if rate else float('nan'):.0f} uploads/s (target >= {TARGETS['web_per_s']:g}), "
              f"latency mean {latency.group(1) if latency else '?'}, max {latency.group(3) if latency else '?'}, "
              f"answers not 2xx: {refused.group(1) if refused else 0}; web processes used {cores:.2f} cores "
              f"({' + '.join(f'{c:.2f}' for c in per_process if c >= 0.01)}) ({uptime()})", flush=True)  # fmt: skip


def process_stats() -> list[tuple[int, int, float]]:
    """``(pid, process group, CPU seconds used so far: user + system)`` of every process (``/proc/<pid>/stat``: pgrp,
    utime and stime fields; proc(5))."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats.append((int(entry.name), int(fields[2]), (int(fields[11]) + int(fields[12])) / ticks))
    return stats


def process_cpu_seconds(leaders: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each process whose process group leader is in ``leaders`` (``process_stats``),
    children such as gunicorn's workers included, by process id."""
    return {pid: seconds for pid, group, seconds in process_stats() if group in leaders}


async def load_warm(stack: OurStack, data: list[bytes]) -> None:
    """A few uploads so that every web process and thread has loaded its code before the clock starts."""
    import httpx

    async with httpx.AsyncClient(base_url=stack.base_url, headers={"Authorization": f"Token {stack.token}"}) as http:
        for body in data[:8]:
            await http.post("/api/v1/predictions/", files={"image": ("w.jpg", body, "image/jpeg")})


# --- main --------------------------------------------------------------------------------------------


def main() -> None:
    """Parse the options and run the chosen sections in order."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--var-dir", type=Path, default=ROOT / "var", help="var folder with an active model")
    parser.add_argument("--redis", nargs="?", const="redis://127.0.0.1:6379/13", default=None,
                        help="also run with Redis as the broker (this URL; its database is flushed)")  # fmt: skip
    parser.add_argument("--real", type=int, default=60)
    parser.add_argument("--catalogue", type=int, default=40)
    parser.add_argument("--single", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--first-poll", type=float, default=0.0,
                        help="0: long polling (POST and GET ?wait=20); else seconds to the first poll of "
                        "the older schedule (0.15 before long polling)")  # fmt: skip
    parser.add_argument("--models-photos", type=int, default=30)
    parser.add_argument("--threads-seconds", type=float, default=15.0)
    parser.add_argument("--threads-sizes", type=int, nargs="+", default=[320, 256])
    parser.add_argument("--threads-runtimes", nargs="+", choices=list(THREADS_RUNTIMES), default=list(THREADS_RUNTIMES))
    parser.add_argument("--models-runtimes", nargs="+", choices=("openvino", "native"), default=["openvino", "native"])
    parser.add_argument("--embed-images", type=int, default=256)
    parser.add_argument("--web-uploads", type=int, default=2000)
    parser.add_argument("--web-clients", type=int, default=32)
    parser.add_argument(
        "--web-client",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="web section's load generator: wrk when it is installed (auto), or asyncio + httpx",
    )
    parser.add_argument(
        "--web-connections", type=int, nargs="+", default=[8, 16], help="wrk's concurrent connections, one run each"
    )
    parser.add_argument("--web-seconds", type=int, default=15, help="length of each wrk run")
    parser.add_argument("--port", type=int, default=8150)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="environment variable for this stack's processes (repeatable)")  # fmt: skip
    parser.add_argument("--int8", default=None, help="a quantised u2netp ONNX file for the background section")
    parser.add_argument("--_models-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--background-side", choices=("test", "val", "train", "all"), default="test",
                        help="wild photos of the background section: a side of the model's split, or all")  # fmt: skip
    parser.add_argument("--background-variants", nargs="+", choices=BACKGROUND_VARIANTS, default=BACKGROUND_VARIANTS,
                        help="ways of handling the background that the background section compares")  # fmt: skip
    parser.add_argument("--_background-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    EXTRA_ENV.update(item.split("=", 1) for item in args.set)
    if args.web_client == "auto":
        args.web_client = "wrk" if shutil.which("wrk") else "httpx"
    if args._models_child:
        models_child(Path(args._models_child[0]), int(args._models_child[1]))
        return
    if args._background_child:
        var_dir, int8, side, names = args._background_child
        background_child(Path(var_dir), int8, side, names.split(","))
        return
    print(f"bench_speed: {' '.join(args.sections)}; var folder {args.var_dir}; {os.cpu_count()} CPUs; {uptime()}")
    needs_model = {"pipeline", "models", "background"} & set(args.sections)
    if needs_model and not has_active_model(args.var_dir.resolve()):
        print(f"no active model in {args.var_dir} (run `make run` or `manage.py bootstrap` with SNEAKERS_VAR_DIR, or "
              f"give --var-dir): skipping {', '.join(sorted(needs_model))}")  # fmt: skip
        args.sections = [section for section in args.sections if section not in needs_model]
    if EXTRA_ENV:
        print(f"this stack's processes also get {EXTRA_ENV}")
    all_runs: dict[str, list[Run]] = {}
    if "pipeline" in args.sections:
        stack = OurStack(args.var_dir.resolve(), args.port, None)
        capacity = catalogue_photos(args.catalogue, seed=5)
        all_runs["ours, make run defaults"] = bench_stack(
            "ours, make run defaults",
            stack.start,
            stack.stop,
            lambda: stack.client(args.first_poll),
            args,
            extra=lambda: stack.capacity(capacity, args.clients),
            groups=stack.groups,
        )
        if args.redis:
            import redis

            redis.Redis.from_url(args.redis).flushdb()
            stack = OurStack(args.var_dir.resolve(), args.port, args.redis)
            all_runs["ours, Redis broker"] = bench_stack(
                "ours, Redis broker",
                stack.start,
                stack.stop,
                lambda: stack.client(args.first_poll),
                args,
                groups=stack.groups,
            )
    if "seed" in args.sections:
        seed = SeedApp(args.port + 2, Path(tempfile.gettempdir()) / "sneakers-seed-app.log")
        all_runs["seed-style app"] = bench_stack("seed-style app", seed.start, seed.stop, seed.client, args)
    if all_runs:
        print_table(all_runs)
    if "models" in args.sections:
        bench_models(args)
    if "threads" in args.sections:
        bench_threads(args)
    if "background" in args.sections:
        bench_background(args)
    if "embed" in args.sections:
        bench_embed(args)
    if "web" in args.sections:
        bench_web(args)


if __name__ == "__main__":
    main()

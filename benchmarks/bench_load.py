"""Load benchmark of the upload -> result pipeline: a real gunicorn site and Celery worker on loopback.

Run by hand (prints figures, asserts nothing)::

    .venv/bin/python benchmarks/bench_load.py                      # start everything, 1,000 uploads
    .venv/bin/python benchmarks/bench_load.py --kill-worker-once   # SIGKILL the worker mid-run, restart it
    .venv/bin/python benchmarks/bench_load.py --connect http://127.0.0.1:8000 --token KEY   # existing site

Unless ``--connect`` is given it starts, on 127.0.0.1 only: gunicorn (``sneakers.wsgi``) and one Celery
worker with ``--beat`` (so the sweeper ``predictions.tasks.sweep`` runs), against PostgreSQL
(``postgres://postgres@127.0.0.1:5432/sneakers_bench_tiny_<folder hash>``, created if missing) and Redis (database 14,
flushed first), with media and logs under ``var/bench/``. The model is a tiny Keras backbone built with
``worker.ml.testing.build_tiny_backbone`` and trained on a small catalog drawn here (two colour-coded
brands, imported with ``manage.py import_catalog``, trained with ``manage.py train``), with background
removal off, so the figures measure the platform rather than TensorFlow. ``--real-model`` uses the
configured real weights and dataset instead (database ``sneakers_bench_real_<folder hash>``; imports and trains first
if that database has no active model: minutes).

Then 50 concurrent clients (asyncio + httpx) send 1,000 uploads (small valid JPEGs made in code, four
sizes, plus about 5 % invalid files) to ``POST /api/v1/predictions/`` with a partner token, and the bench
polls the API (the list, 100 per page) until every accepted upload is terminal or the deadline passes.

Printed: accepted, rejected (4xx), errors (5xx or transport), succeeded, failed (by code), lost
(accepted but not terminal at the deadline; must be 0), upload latency p50/p95/p99, time to result
(server ``created_at`` -> ``finished_at``) p50/p95, worker throughput (terminal jobs per second between
the first upload and the last result), and the number of duplicate task deliveries the worker skipped.

Rates: the server it starts gets ``SNEAKERS_API_UPLOAD_RATE`` / ``SNEAKERS_API_READ_RATE`` of
100000/min so throttling does not shape the figures. Sweeper: ``SNEAKERS_REQUEUE_AFTER_SECONDS=20``,
``SNEAKERS_STUCK_AFTER_SECONDS=30`` and a 5 s sweep interval (override with ``--requeue-after``,
``--stuck-after``, ``--sweep-interval``), so jobs of a killed worker come back quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BENCH_DIR = ROOT / "var" / "bench"
UPLOAD_SIZES = [(96, 72), (320, 240), (640, 480), (1280, 960)]


# --- test data -----------------------------------------------------------------------------------


def shoe_jpeg(size: tuple[int, int], seed: int) -> bytes:
    """A product-shot-like JPEG: a coloured ellipse with a dark sole on white, jittered by ``seed``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colour = rng.choice([(200, 30, 40), (30, 60, 210)])
    x0, y0 = int(width * rng.uniform(0.05, 0.15)), int(height * rng.uniform(0.15, 0.3))
    x1, y1 = int(width * rng.uniform(0.85, 0.95)), int(height * rng.uniform(0.7, 0.8))
    draw.ellipse((x0, y0, x1, y1), fill=colour)
    draw.rectangle((x0, y1 - height // 12, x1, y1), fill=(40, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(70, 92))
    return buffer.getvalue()


def invalid_file(seed: int) -> bytes:
    """A file the site must refuse: random bytes, a truncated JPEG, or a GIF."""
    from PIL import Image

    rng = random.Random(seed)
    kind = seed % 3
    if kind == 0:
        return rng.randbytes(2048)
    if kind == 1:
        data = shoe_jpeg((320, 240), seed)
        return data[: len(data) // 2]
    buffer = io.BytesIO()
    Image.new("P", (64, 48)).save(buffer, format="GIF")
    return buffer.getvalue()


def make_uploads(count: int, invalid_fraction: float, seed: int = 0) -> list[tuple[str, bytes, bool]]:
    """``(file name, bytes, valid)`` for each upload; a small pool of distinct images is reused."""
    rng = random.Random(seed)
    pool = [shoe_jpeg(UPLOAD_SIZES[i % len(UPLOAD_SIZES)], i) for i in range(40)]
    bad = [invalid_file(i) for i in range(9)]
    uploads = []
    for i in range(count):
        if rng.random() < invalid_fraction:
            uploads.append((f"bad-{i}.jpg", rng.choice(bad), False))
        else:
            uploads.append((f"shoe-{i}.jpg", rng.choice(pool), True))
    return uploads


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    """The processes this bench started and how to reach them."""

    env: dict[str, str]
    base_url: str
    token: str = ""
    web: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    logs: list = field(default_factory=list)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``manage.py`` with the bench environment; output captured."""
        return subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, check=check, capture_output=True, text=True
        )

    def start_worker(self, concurrency: int) -> None:
        """Start one Celery worker (prefork pool, embedded beat) on the inference and default queues."""
        log = (BENCH_DIR / "logs" / "worker.log").open("a")
        self.logs.append(log)
        self.worker = subprocess.Popen(
            [
                PYTHON, "-m", "celery", "-A", "sneakers", "worker", "--beat",
                "--schedule", str(BENCH_DIR / "celerybeat-schedule"),
                "--queues", "inference,default", "--concurrency", str(concurrency), "--pool", "prefork",
                "--hostname", f"bench-{secrets.token_hex(3)}@%h", "--without-gossip", "--without-mingle",
                "--loglevel", "INFO",
            ],
            cwd=ROOT, env={**self.env, "DJANGO_LOG_LEVEL": "INFO"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill_worker(self) -> list[int]:
        """SIGKILL the worker's pool processes, then the worker itself (as an OOM kill would); their pids."""
        assert self.worker is not None
        children = subprocess.run(["pgrep", "-P", str(self.worker.pid)], capture_output=True, text=True).stdout
        pids = [int(pid) for pid in children.split()]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)
        return pids + [self.worker.pid]

    def stop(self) -> None:
        """Stop what was started (TERM, then KILL after 15 s), by process group."""
        for process in (self.worker, self.web):
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it does not exist."""
    import psycopg2

    name = url.rsplit("/", 1)[1]
    connection = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def write_small_catalog(folder: Path) -> None:
    """A two-brand catalog of drawn shoes with ``manifest.csv``, for ``manage.py import_catalog``."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for b, (brand, colour) in enumerate({"redshoe": (200, 30, 40), "blueshoe": (30, 60, 210)}.items()):
        for p in range(6):
            for k in range(3):
                seed = 1000 * b + 10 * p + k
                from PIL import Image, ImageDraw

                rng = random.Random(seed)
                image = Image.new("RGB", (160, 120), (255, 255, 255))
                draw = ImageDraw.Draw(image)
                jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
                draw.ellipse((rng.randint(8, 20), rng.randint(20, 34), rng.randint(140, 152), rng.randint(84, 96)),
                             fill=jitter)  # fmt: skip
                name = f"{brand}/{p}-{k}.jpg"
                (folder / brand).mkdir(exist_ok=True)
                image.save(folder / name, format="JPEG", quality=90)
                rows.append([name, brand, f"{brand} model {p}", f"{60 + 80 * b + 5 * p}.00", "bench", name, "0"])
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "brand", "product_name", "price_usd", "source_repo", "source_path",
                         "source_commit"])  # fmt: skip
        writer.writerows(rows)


def start_stack(args: argparse.Namespace) -> Stack:
    """Prepare the database, model and token, then start gunicorn and the worker; wait until ready."""
    var_dir = BENCH_DIR / ("real" if args.real_model else "tiny")
    # One database per bench folder: its rows (catalog, model version) point at files in that folder,
    # so another checkout's bench database would name artifacts this one does not have.
    folder_key = hashlib.sha256(str(var_dir.resolve()).encode()).hexdigest()[:8]
    db_name = f"sneakers_bench_{'real' if args.real_model else 'tiny'}_{folder_key}"
    (BENCH_DIR / "logs").mkdir(parents=True, exist_ok=True)
    var_dir.mkdir(parents=True, exist_ok=True)
    database_url = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sneakers.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "SNEAKERS_VAR_DIR": str(var_dir),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        "SNEAKERS_API_UPLOAD_RATE": "100000/min",
        "SNEAKERS_API_READ_RATE": "100000/min",
        "SNEAKERS_REQUEUE_AFTER_SECONDS": str(args.requeue_after),
        "SNEAKERS_STUCK_AFTER_SECONDS": str(args.stuck_after),
        "SNEAKERS_SWEEP_INTERVAL_SECONDS": str(args.sweep_interval),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if not args.real_model:
        env["SNEAKERS_BACKBONE_PATH"] = str(var_dir / "tiny_backbone.keras")
        env["SNEAKERS_BACKGROUND_METHOD"] = "none"
    ensure_database(database_url)
    import redis

    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    stack = Stack(env=env, base_url=f"http://127.0.0.1:{args.port}")
    stack.manage("migrate", "--no-input")

    has_model = stack.manage(
        "shell", "-c",
        "from registry.selectors import model_version_get_active as m; print('yes' if m() else 'no')",
    ).stdout.strip().endswith("yes")  # fmt: skip
    if not has_model:
        if args.real_model:
            print("no active model in the bench database: importing the dataset and training (minutes)")
            stack.manage(
                "import_catalog", env.get("SNEAKERS_DATASET_DIR", str(ROOT.parent / "shared/datasets/sneakers"))
            )
        else:
            subprocess.run(
                [PYTHON, "-c", "import sys; from pathlib import Path; from worker.ml.testing import "
                 "build_tiny_backbone as b; b(Path(sys.argv[1]), dim=16, seed=0)", env["SNEAKERS_BACKBONE_PATH"]],
                cwd=ROOT, env=env, check=True, capture_output=True,
            )  # fmt: skip
            write_small_catalog(var_dir / "catalog")
            stack.manage("import_catalog", str(var_dir / "catalog"))
        trained = stack.manage("train", "--activate", "--seed", "0")
        print("trained:", trained.stdout.strip().splitlines()[-1] if trained.stdout.strip() else "(no output)")
    stack.token = stack.manage(
        "shell", "-c",
        "from django.contrib.auth import get_user_model as g; from accounts.services import "
        "partner_token_get_or_create as t; u, _ = g().objects.get_or_create(username='bench-partner'); "
        "print(t(user=u).key)",
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    # Earlier runs' predictions would be polled too: start from an empty table.
    stack.manage("shell", "-c", "from predictions.models import Prediction as P; P.objects.all().delete()")

    web_log = (BENCH_DIR / "logs" / "gunicorn.log").open("a")
    stack.logs.append(web_log)
    stack.web = subprocess.Popen(
        [
            PYTHON, "-m", "gunicorn", "sneakers.wsgi:application", "--bind", f"127.0.0.1:{args.port}",
            "--workers", str(args.web_workers), "--threads", "4", "--worker-class", "gthread",
            "--timeout", "60", "--log-level", "warning",
        ],
        cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    stack.start_worker(args.worker_concurrency)
    wait_until_ready(stack.base_url, timeout=90)
    return stack


def wait_until_ready(base_url: str, timeout: float) -> None:
    """Poll ``/healthz`` until it answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the site at {base_url} did not come up within {timeout} s (see var/bench/logs/)")


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Results:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # seconds per upload request
    statuses: Counter = field(default_factory=Counter)
    accepted: dict[str, bool] = field(default_factory=dict)  # id -> the file was valid
    transport_errors: int = 0
    started: float = 0.0
    uploads_done: float = 0.0


async def send_uploads(args: argparse.Namespace, base_url: str, token: str, on_progress) -> Results:
    """Send every upload with ``args.concurrency`` clients; collect latencies and accepted ids."""
    import httpx

    uploads = make_uploads(args.uploads, args.invalid_fraction)
    results = Results(started=time.monotonic())
    queue: asyncio.Queue = asyncio.Queue()
    for item in uploads:
        queue.put_nowait(item)
    headers = {"Authorization": f"Token {token}"}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:

        async def client_loop() -> None:
            while True:
                try:
                    name, data, valid = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                began = time.monotonic()
                try:
                    response = await client.post("/api/v1/predictions/", files={"image": (name, data, "image/jpeg")})
                except httpx.HTTPError:
                    results.transport_errors += 1
                    continue
                results.latencies.append(time.monotonic() - began)
                results.statuses[response.status_code] += 1
                if response.status_code == 202:
                    results.accepted[response.json()["id"]] = valid
                on_progress(len(results.latencies) + results.transport_errors)

        await asyncio.gather(*(client_loop() for _ in range(args.concurrency)))
    results.uploads_done = time.monotonic()
    return results


async def wait_for_results(base_url: str, token: str, ids: set[str], deadline_s: float) -> dict[str, dict]:
    """Poll ``GET /api/v1/predictions/?page_size=100`` until every id is terminal or the deadline passes."""
    import httpx

    final: dict[str, dict] = {}
    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=30) as c:
        while time.monotonic() < deadline and not ids <= final.keys():
            url = "/api/v1/predictions/?page_size=100"
            while url:
                page = (await c.get(url)).json()
                for item in page["results"]:
                    if item["id"] in ids and item["status"] in ("succeeded", "failed"):
                        final[item["id"]] = item
                url = page["next"]
            if not ids <= final.keys():
                await asyncio.sleep(1.0)
    return final


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


def report(label: str, results: Results, final: dict[str, dict], skipped_duplicates: int | None) -> None:
    """Print the figures."""
    accepted = len(results.accepted)
    rejected = sum(n for status, n in results.statuses.items() if 400 <= status < 500)
    errors = sum(n for status, n in results.statuses.items() if status >= 500) + results.transport_errors
    outcomes = Counter(item["status"] for item in final.values())
    codes = Counter((item.get("error") or {}).get("code") for item in final.values() if item["status"] == "failed")
    valid_failed = sum(1 for pid, item in final.items() if item["status"] == "failed" and results.accepted[pid])
    lost = accepted - len(final)

    def when(value: str) -> float:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    to_result = [when(i["finished_at"]) - when(i["created_at"]) for i in final.values() if i.get("finished_at")]
    first = min((when(i["created_at"]) for i in final.values()), default=0.0)
    last = max((when(i["finished_at"]) for i in final.values() if i.get("finished_at")), default=0.0)
    upload_wall = results.uploads_done - results.started
    ms = [1000 * value for value in results.latencies]
    print(f"\n== {label} ==")
    answered = sum(results.statuses.values())
    rate = answered / upload_wall
    print(f"uploads sent      {answered + results.transport_errors} in {upload_wall:.1f} s ({rate:.1f}/s);"
          f" statuses {dict(sorted(results.statuses.items()))}")  # fmt: skip
    print(f"accepted          {accepted}")
    print(f"rejected (4xx)    {rejected}")
    print(f"errors (5xx/net)  {errors}")
    print(f"succeeded         {outcomes['succeeded']}")
    print(f"failed            {outcomes['failed']} {dict(codes)} (valid files among them: {valid_failed})")
    print(f"lost              {lost}")
    print(f"upload latency    p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms, "
          f"p99 {percentile(ms, 99):.0f} ms")  # fmt: skip
    print(f"time to result    p50 {percentile(to_result, 50):.2f} s, p95 {percentile(to_result, 95):.2f} s, "
          f"max {max(to_result, default=float('nan')):.2f} s")  # fmt: skip
    if last > first:
        print(f"worker throughput {len(final) / (last - first):.1f} jobs/s ({len(final)} jobs in {last - first:.1f} s)")
    if skipped_duplicates is not None:
        print(f"duplicate deliveries skipped by the worker (claim already taken): {skipped_duplicates}")


def count_skipped_duplicates() -> int | None:
    """Lines of this run's worker log saying a delivered job was no longer queued."""
    log = BENCH_DIR / "logs" / "worker.log"
    return log.read_text(errors="replace").count("is not queued") if log.exists() else None


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    """Parse the options, start (or connect to) the stack, run the load, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", metavar="URL", help="use a running site (and its workers) instead")
    parser.add_argument("--token", help="partner token for --connect")
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--invalid-fraction", type=float, default=0.05)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds to wait for results after uploads")
    parser.add_argument("--kill-worker-once", action="store_true", help="SIGKILL the worker mid-run, then restart it")
    parser.add_argument("--real-model", action="store_true", help="real weights and dataset instead of a tiny model")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--requeue-after", type=int, default=20, help="SNEAKERS_REQUEUE_AFTER_SECONDS")
    parser.add_argument("--stuck-after", type=int, default=30, help="SNEAKERS_STUCK_AFTER_SECONDS")
    parser.add_argument("--sweep-interval", type=float, default=5.0, help="SNEAKERS_SWEEP_INTERVAL_SECONDS")
    args = parser.parse_args()
    if args.connect and args.kill_worker_once:
        parser.error("--kill-worker-once needs the bench to start the worker (no --connect)")
    if args.connect and not args.token:
        parser.error("--connect needs --token")

    stack = None
    if args.connect:
        base_url, token = args.connect.rstrip("/"), args.token
        wait_until_ready(base_url, timeout=10)
    else:
        (BENCH_DIR / "logs").mkdir(parents=True, exist_ok=True)
        (BENCH_DIR / "logs" / "worker.log").write_text("")
        started = time.monotonic()
        stack = start_stack(args)
        base_url, token = stack.base_url, stack.token
        print(f"stack ready in {time.monotonic() - started:.0f} s at {base_url} (logs in {BENCH_DIR / 'logs'})")

    killed: list[int] = []

    def on_progress(done: int) -> None:
        if args.kill_worker_once and not killed and stack is not None and done >= args.uploads // 3:
            killed.extend(stack.kill_worker())
            print(f"SIGKILLed worker processes {killed} after {done} uploads; restarting the worker")
            stack.start_worker(args.worker_concurrency)

    try:
        results = asyncio.run(send_uploads(args, base_url, token, on_progress))
        final = asyncio.run(wait_for_results(base_url, token, set(results.accepted), args.deadline))
        label = "with one worker SIGKILL" if killed else "steady"
        report(label, results, final, count_skipped_duplicates() if stack else None)
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    main()

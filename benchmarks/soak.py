"""Soak test of ``make run``'s stack on the embedded defaults: steady uploads for N minutes, then check that
nothing was lost and nothing crashed. Run by hand (prints figures, asserts nothing)::

    .venv/bin/python benchmarks/soak.py --minutes 30                  # tiny model, 2 uploads/s
    .venv/bin/python benchmarks/soak.py --minutes 30 --kill-worker-every 300   # and SIGKILL the worker
    .venv/bin/python benchmarks/soak.py --var-dir /tmp/speed_var --real-photos  # a var dir with a real model

It starts every line of the ``Procfile`` (web: gunicorn, worker: the inference worker, jobs: the jobs worker
with beat) as ``make run`` does through honcho, but as separate subprocesses so it can restart one, with the
environment of a fresh checkout: no ``DATABASE_URL`` (SQLite in the var folder) and no ``CELERY_BROKER_URL``
(the embedded SQLite broker, ``sneakers.broker``), everything in a temporary var folder (``--var-dir`` to
keep or reuse one). Unless the var folder already has an active model, it trains a tiny one first (a
small Keras backbone built by ``worker.ml.testing.build_tiny_backbone`` and a drawn two-brand catalog,
background removal off), so the soak measures the platform, not TensorFlow.

Uploads go through the API (``POST /api/v1/predictions/`` with a partner token; the token's upload rate is
raised so throttling does not shape the run) at ``--rate`` per second, spread over ``--clients`` clients:
drawn JPEGs, or with ``--real-photos`` the shared real-world and catalogue photos. ``--kill-worker-every``
SIGKILLs the inference worker's process group (main process and pool, as an out-of-memory kill would) and
starts it again; ``--restart-worker-every`` stops it with SIGTERM (a warm shutdown) and starts it again.

At the end it waits until every accepted upload is terminal (up to ``--deadline`` seconds; a job whose worker
was killed mid-run comes back through the sweeper after ``SNEAKERS_STUCK_AFTER_SECONDS``) and prints:
uploads accepted, succeeded, failed (by code), lost (accepted, not terminal at the deadline), upload-to-result
p50/p90/max, processes that exited without being asked (crashes), error lines in the logs (``Traceback``,
``Unrecoverable error``, ``JSONDecodeError``), and the broker file's rows and size.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
PYTHON = sys.executable
SHARED = ROOT.parent / "shared"
ERROR_PATTERNS = ("Traceback", "Unrecoverable error", "JSONDecodeError", "WorkerLostError", "CRITICAL")
"""Log lines counted as errors."""


def procfile_lines(path: Path) -> dict[str, str]:
    """``name -> command`` of a Procfile (comments and blank lines skipped)."""
    lines = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            lines[name.strip()] = command.strip()
    return lines


@dataclass
class Process:
    """One Procfile line run as a subprocess in its own process group."""

    name: str
    command: str
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    expected_exit: bool = False
    starts: int = 0
    crashes: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Start (again), appending to the log."""
        log = self.log_path.open("a")
        self.popen = subprocess.Popen(
            # Through the shell as honcho runs a Procfile line; `exec env` so that the pid is the program's
            # own (a line may start with VAR=value assignments, which `exec` alone would take as the command).
            ["/bin/sh", "-c", f"exec env {self.command}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.expected_exit = False
        self.starts += 1

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Stop the process: SIGTERM to the main process only (Celery's warm shutdown: it stops its own pool),
        or SIGKILL to the whole group; then SIGKILL whatever is left of the group after ``timeout`` seconds.

        (SIGTERM to the whole group, main process and prefork pool at once, can leave Celery's main process
        blocked for good on a pool lock that a killed child held; honcho sends that and SIGKILLs 5 s later.)
        """
        if self.popen is None:
            return
        self.expected_exit = True
        group = self.popen.pid
        if self.popen.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.crashes.append(f"{self.name} did not stop within {timeout:.0f} s of {signal.Signals(sig).name}")
        try:
            os.killpg(group, signal.SIGKILL)  # pool processes or anything else left behind
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)

    def check(self) -> None:
        """Record a crash when the process ended without being asked to."""
        if self.popen is not None and self.popen.poll() is not None and not self.expected_exit:
            self.crashes.append(f"{self.name} exited with {self.popen.returncode} at {time.strftime('%H:%M:%S')}")
            self.expected_exit = True


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``env``; its standard output (raises on failure)."""
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def prepare(env: dict[str, str], var_dir: Path) -> str:
    """Migrate, make sure a model is active (a tiny one unless there is one), and return a partner token."""
    manage(env, "migrate", "--noinput")
    code = "from registry.selectors import model_version_get_active as m; print(bool(m()))"
    active = manage(env, "shell", "-c", code)
    if active.strip().splitlines()[-1] != "True":
        from bench_load import write_small_catalog

        print("no active model in the var folder: training a tiny one ...", flush=True)
        subprocess.run(
            [PYTHON, "-c", "import sys; from pathlib import Path; from worker.ml.testing import "
             "build_tiny_backbone as b; b(Path(sys.argv[1]), dim=16, seed=0)", env["SNEAKERS_BACKBONE_PATH"]],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        write_small_catalog(var_dir / "catalog")
        manage(env, "import_catalog", str(var_dir / "catalog"))
        manage(env, "train", "--activate", "--seed", "0")
    code = (
        "from django.contrib.auth import get_user_model as g; from accounts.services import "
        "partner_token_get_or_create as t; u, _ = g().objects.get_or_create(username='soak-partner'); "
        "print(t(user=u).key)"
    )
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


def photo_pool(real: bool, count: int = 60) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` uploads: shared real-world and catalogue photos, or drawn JPEGs."""
    if real:
        wild = SHARED / "datasets" / "sneakers_wild"
        rows = list(csv.DictReader((wild / "extras" / "provenance.csv").open()))
        paths = [wild / r["image_path"] for r in rows if r["eyeballed_style"] == "real-world"][: count // 2]
        catalogue = sorted((SHARED / "datasets" / "sneakers" / "images").glob("*/*"))
        paths += random.Random(0).sample(catalogue, count - len(paths))
        return [(p.name, p.read_bytes()) for p in paths]
    from bench_load import UPLOAD_SIZES, shoe_jpeg

    return [(f"shoe-{i}.jpg", shoe_jpeg(UPLOAD_SIZES[i % len(UPLOAD_SIZES)], i)) for i in range(count)]


@dataclass
class Uploads:
    """What the clients sent and saw."""

    accepted: dict[str, float] = field(default_factory=dict)  # id -> time sent
    statuses: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def refuse_busy_port(port: int) -> None:
    """Stop with a message when something already listens on ``127.0.0.1:port``: the Procfile's gunicorn binds
    with ``--reuse-port`` and would share the port with a leftover server instead of failing.

    Raises:
        SystemExit: the port is in use.
    """
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"something already listens on 127.0.0.1:{port}; stop it first (--port)")


def upload_loop(base_url: str, token: str, photos, rate: float, clients: int, until: float, out: Uploads) -> None:
    """Send uploads at ``rate`` per second in all (each of ``clients`` threads at ``rate / clients``)."""
    import httpx

    def client(index: int) -> None:
        rng = random.Random(index)
        interval = clients / rate
        next_at = time.monotonic() + rng.uniform(0, interval)
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=30) as http:
            while next_at < until:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                name, data = rng.choice(photos)
                try:
                    response = http.post("/api/v1/predictions/", files={"image": (name, data, "image/jpeg")})
                except httpx.HTTPError:
                    with out.lock:
                        out.transport_errors += 1
                    continue
                with out.lock:
                    out.statuses[response.status_code] += 1
                    if response.status_code == 202:
                        out.accepted[response.json()["id"]] = time.time()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def final_states(base_url: str, token: str, ids: set[str], deadline: float) -> dict[str, dict]:
    """Poll the API list until every id is terminal or ``deadline`` (monotonic) passes."""
    import httpx

    final: dict[str, dict] = {}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=60) as http:
        while True:
            url = "/api/v1/predictions/?page_size=100"
            while url:
                page = http.get(url).json()
                for item in page["results"]:
                    if item["id"] in ids and item["status"] in ("succeeded", "failed"):
                        final[item["id"]] = item
                url = page["next"]
            if ids <= final.keys() or time.monotonic() > deadline:
                return final
            time.sleep(2.0)


def log_errors(log_dir: Path) -> Counter:
    """``(file, pattern) -> count`` of error lines in the process logs."""
    found: Counter = Counter()
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            for pattern in ERROR_PATTERNS:
                if pattern in line:
                    found[(path.name, pattern)] += 1
    return found


def main() -> None:
    """Parse options, start the stack, upload for the given minutes, wait for results, report, stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2.0, help="uploads per second, all clients together")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--var-dir", type=Path, default=None, help="var folder (default: a new temporary one)")
    parser.add_argument("--real-photos", action="store_true", help="shared real-world and catalogue photos")
    parser.add_argument("--kill-worker-every", type=float, default=0.0, help="seconds between worker SIGKILLs")
    parser.add_argument("--restart-worker-every", type=float, default=0.0, help="seconds between warm restarts")
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds to wait for results after uploads")
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    args = parser.parse_args()

    var_dir = (args.var_dir or Path(tempfile.mkdtemp(prefix="sneakers-soak-"))).resolve()
    log_dir = var_dir / "soak-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "SNEAKERS_", "DJANGO_"))}
    env.update(
        PATH=f"{Path(PYTHON).parent}:{env.get('PATH', '')}",
        SNEAKERS_VAR_DIR=str(var_dir),
        SNEAKERS_BIND=f"127.0.0.1:{args.port}",
        SNEAKERS_API_UPLOAD_RATE="100000/min",
        SNEAKERS_API_READ_RATE="100000/min",
        DJANGO_LOG_LEVEL="WARNING",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    # A var folder of its own (or one an earlier soak made) gets the tiny model; one with a database of its own
    # (e.g. made by `make run`) keeps its model and weights.
    tiny = args.var_dir is None or not (var_dir / "db.sqlite3").exists() or (var_dir / "tiny_backbone.keras").exists()
    if tiny:
        env.update(
            SNEAKERS_BACKBONE_PATH=str(var_dir / "tiny_backbone.keras"),
            SNEAKERS_BACKGROUND_METHOD="none",
            SNEAKERS_FINETUNE="false",
            SNEAKERS_WILD_DIR=str(var_dir / "no-wild"),
            SNEAKERS_NEGATIVES_DIR=str(var_dir / "no-negatives"),
            SNEAKERS_IMAGENET_CLASSIFIER_PATH=str(var_dir / "no-classifier.keras"),
        )
    print(f"var folder {var_dir}; logs in {log_dir}", flush=True)
    token = prepare(env, var_dir)
    processes = {
        name: Process(name, command, env, log_dir / f"{name}.log")
        for name, command in procfile_lines(args.procfile).items()
    }
    refuse_busy_port(args.port)
    for process in processes.values():
        process.start()
    base_url = f"http://127.0.0.1:{args.port}"
    import httpx

    for _ in range(240):
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    print(f"stack up: {', '.join(f'{p.name} pid {p.popen.pid}' for p in processes.values())}", flush=True)

    photos = photo_pool(args.real_photos)
    uploads = Uploads()
    started = time.monotonic()
    until = started + 60 * args.minutes
    sender = threading.Thread(
        target=upload_loop, args=(base_url, token, photos, args.rate, args.clients, until, uploads), daemon=True
    )
    sender.start()
    events: list[str] = []
    next_kill = started + args.kill_worker_every if args.kill_worker_every else float("inf")
    next_restart = started + args.restart_worker_every if args.restart_worker_every else float("inf")
    worker = processes["worker"]
    next_report = started + 60.0
    while sender.is_alive():
        time.sleep(1.0)
        for process in processes.values():
            process.check()
        now = time.monotonic()
        if now >= next_kill and now < until - 30:
            worker.stop(signal.SIGKILL, timeout=10)
            worker.start()
            events.append(f"{time.strftime('%H:%M:%S')} worker SIGKILLed and started again")
            next_kill += args.kill_worker_every
        if now >= next_restart and now < until - 30:
            worker.stop(signal.SIGTERM, timeout=120)
            worker.start()
            events.append(f"{time.strftime('%H:%M:%S')} worker stopped (SIGTERM) and started again")
            next_restart += args.restart_worker_every
        if now >= next_report:  # every minute, also when a worker restart held the loop for longer than a tick
            print(f"{(now - started) / 60:.0f} min: {sum(uploads.statuses.values())} uploads sent", flush=True)
            next_report += 60.0
    sent_done = time.monotonic()
    final = final_states(base_url, token, set(uploads.accepted), time.monotonic() + args.deadline)
    waited = time.monotonic() - sent_done
    for process in processes.values():
        process.check()
    crashes = [crash for process in processes.values() for crash in process.crashes]
    for process in processes.values():
        process.stop()

    def when(value: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    to_result = sorted(when(i["finished_at"]) - when(i["created_at"]) for i in final.values() if i.get("finished_at"))
    outcomes = Counter(item["status"] for item in final.values())
    codes = Counter((item.get("error") or {}).get("code") for item in final.values() if item["status"] == "failed")
    broker = var_dir / "broker.sqlite3"
    rows = "n/a"
    if broker.exists():
        import sqlite3

        with sqlite3.connect(broker) as db:
            rows = db.execute("SELECT COUNT(*) FROM message").fetchone()[0]
    accepted = len(uploads.accepted)
    print("\n== soak ==")
    model = "tiny model" if tiny else f"the model in {var_dir}"
    print(f"ran               {args.minutes:g} min of uploads at {args.rate:g}/s from {args.clients} clients "
          f"({'real photos' if args.real_photos else 'drawn JPEGs'}, {model})")  # fmt: skip
    print(f"uploads sent      {sum(uploads.statuses.values()) + uploads.transport_errors}; statuses "
          f"{dict(sorted(uploads.statuses.items()))}; transport errors {uploads.transport_errors}")  # fmt: skip
    print(f"accepted          {accepted}")
    print(f"succeeded         {outcomes['succeeded']}")
    print(f"failed            {outcomes['failed']} {dict(codes)}")
    print(f"lost              {accepted - len(final)} (accepted, not terminal {waited:.0f} s after the last upload)")
    if to_result:
        p90 = statistics.quantiles(to_result, n=10)[-1] if len(to_result) > 1 else to_result[0]
        print(f"upload to result  p50 {statistics.median(to_result):.2f} s, p90 {p90:.2f} s, max {to_result[-1]:.1f} s")
    print(f"worker restarts   {len(events)}" + "".join(f"\n                  {e}" for e in events))
    print(f"crashes, hangs    {len(crashes)}" + "".join(f"\n                  {c}" for c in crashes))
    errors = log_errors(log_dir)
    print(f"log error lines   {sum(errors.values())} {dict(errors) if errors else ''}")
    size = sum(p.stat().st_size for p in var_dir.glob("broker.sqlite3*")) if broker.exists() else 0
    print(f"broker file       {rows} rows left, {size / 1e6:.1f} MB with its WAL")
    pattern = re.compile(r"Task predictions\.tasks\.predict\[.*\] succeeded")
    done = sum(len(pattern.findall(p.read_text(errors="replace"))) for p in log_dir.glob("worker.log"))
    print(f"worker log        {done} predict tasks succeeded (duplicates skipped: "
          f"{sum(p.read_text(errors='replace').count('is not queued') for p in log_dir.glob('*.log'))})")  # fmt: skip
    print(f"commands          {shlex.join(sys.argv)}")


if __name__ == "__main__":
    main()

"""``manage.py predict IMAGE [IMAGE ...] [--json]``: the worker's pipeline on local files, one result per line."""

import json as jsonlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry import runtime
from registry.selectors import model_version_get_active
from worker.inference import SIMILAR_CANDIDATES, result_payload
from worker.ml.errors import ImageError, ModelError

EMPTY_RESULT = {
    "brand": None,
    "brands": None,
    "abstain": None,
    "model": None,
    "models": None,
    "price_usd": None,
    "similar": None,
    "timings_ms": None,
}


class Command(BaseCommand):
    help = (
        "Run the active model's prediction pipeline on image files; a bad image reports an error and the run goes on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("images", nargs="+", type=Path)
        parser.add_argument("--json", action="store_true", help="One JSON object per line.")

    def handle(self, *args, images: list[Path], json: bool, **options) -> None:
        model_version = model_version_get_active()
        if model_version is None:
            raise CommandError("no model version is active; run `manage.py train` first")
        try:
            pipeline = runtime.pipeline_get(model_version)
        except ModelError as exc:
            raise CommandError(str(exc)) from exc

        for path in images:
            record = {"image": str(path), **EMPTY_RESULT, "error": None}
            try:
                data = path.read_bytes()
                record.update(result_payload(pipeline.predict(data, similar_k=SIMILAR_CANDIDATES)))
            except ImageError as exc:
                record["error"] = {"code": exc.code, "message": exc.message}
            except OSError as exc:
                record["error"] = {"code": "file_unreadable", "message": f"{path}: {exc.strerror or exc}"}
            self._write(record, as_json=json)

    def _write(self, record: dict, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(_dumps(record))
        elif record["error"]:
            self.stdout.write(f"{record['image']}: error {record['error']['code']}: {record['error']['message']}")
        else:
            guesses = ", ".join(f"{b['name']} {b['probability']:.2f}" for b in record["brands"])
            if record["abstain"]:
                guesses = f"abstains ({record['abstain']['reason']}); guesses: {guesses}"
            price = record["price_usd"]
            price_text = f" ~${price['estimate']:.0f} ({price['low']:.0f}-{price['high']:.0f})" if price else ""
            model_text = f"; model {record['model']}" if record["model"] else ""
            self.stdout.write(f"{record['image']}: {guesses}{model_text}{price_text}")


def _dumps(record: dict) -> str:
    return jsonlib.dumps(record, ensure_ascii=False)

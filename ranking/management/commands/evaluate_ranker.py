import json

from django.core.management.base import BaseCommand, CommandError

from ranking.importing import ImpressionImportError


class Command(BaseCommand):
    help = (
        "Evaluate a ranker (NDCG@1/3, GAUC, AUC, NSCTR and the random / highest-past-CTR "
        "baselines) on its held-out days, or on a log file that was never imported (--logs)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", default="latest", help="latest or a ranker name")
        parser.add_argument("--logs", default=None, help="JSONL/CSV/Parquet impression logs")
        parser.add_argument("--format", default=None, choices=["jsonl", "csv", "parquet"])
        parser.add_argument("--json", action="store_true", help="print the metrics as JSON")

    def handle(self, *args, model, logs, format, json: bool = False, **options):
        from ranking.data import aggregate_logs, logs_from_file
        from ranking.models import RankingModel
        from ranking.scoring import evaluate, load_ranker
        from ranking.selectors import ModelNotFound, resolve_model

        try:
            registered = resolve_model(model, kind=RankingModel.Kind.RANKER)
        except ModelNotFound as exc:
            raise CommandError(str(exc))
        windows = registered.metrics.get("windows", {})
        train = windows.get("train") or [None, None]
        ranker = load_ranker(registered)
        seg_features = None
        try:
            if logs:
                test, seg_features = logs_from_file(logs, format)
            else:
                test_window = windows.get("test")
                if not test_window:
                    raise CommandError(f"{registered.name} has no held-out window; pass --logs.")
                test = aggregate_logs(*test_window)
            metrics = evaluate(ranker, test, aggregate_logs(*train), seg_features=seg_features)
        except ImpressionImportError as exc:
            raise CommandError(str(exc))
        except ValueError as exc:
            raise CommandError(str(exc))
        metrics["model"] = registered.name
        if json:
            self.stdout.write(_json(metrics))
            return
        base = metrics["baselines"]
        for key in ("ndcg@1", "ndcg@3", "gauc", "auc", "nsctr"):
            self.stdout.write(
                f"{key:7s} {_f(metrics[key])}  random {_f(base['random'][key])}  "
                f"past-CTR {_f(base['highest_past_ctr'][key])}"
            )


def _f(v) -> str:
    return "   -  " if v is None else f"{v:.4f}"


def _json(value) -> str:
    return json.dumps(value, indent=2, default=float)

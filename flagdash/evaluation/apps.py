from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "flagdash.evaluation"
    label = "evaluation"
    verbose_name = "Evaluation (OFREP)"

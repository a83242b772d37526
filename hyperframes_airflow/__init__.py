"""hyperframes-airflow: render batches of personalised HyperFrames videos from Apache Airflow."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's provider discovery (`airflow providers list`)."""
    return {
        "package-name": "hyperframes-airflow",
        "name": "HyperFrames",
        "description": (
            "Render batches of personalised HyperFrames videos on AWS Lambda or locally."
        ),
        "versions": [__version__],
    }

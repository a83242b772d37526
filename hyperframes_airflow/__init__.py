"""hyperframes-airflow: render batches of personalised HyperFrames videos from Apache Airflow."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's provider discovery (`airflow providers list`).

    The stack is reached through the Amazon provider's own `aws` connection type (its extra
    says where the stack is), so no connection type of our own is registered.
    """
    from hyperframes_airflow.triggers.watcher import READ_RATE_OPTIONS

    return {
        "package-name": "hyperframes-airflow",
        "name": "HyperFrames",
        "description": (
            "Render batches of personalised HyperFrames videos on AWS Lambda or locally."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "HyperFrames",
                "external-doc-url": "https://hyperframes.heygen.com",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "HyperFrames",
                "python-modules": [
                    "hyperframes_airflow.operators.prepare",
                    "hyperframes_airflow.operators.approval",
                    "hyperframes_airflow.operators.deploy",
                    "hyperframes_airflow.operators.render_lambda",
                    "hyperframes_airflow.operators.render_local",
                    "hyperframes_airflow.operators.manifest",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "HyperFrames",
                "python-modules": ["hyperframes_airflow.hooks.stack"],
            }
        ],
        "triggers": [
            {
                "integration-name": "HyperFrames",
                "python-modules": ["hyperframes_airflow.triggers.render"],
            }
        ],
        "config": {
            "hyperframes": {
                "description": (
                    "Step Functions reads per second that one triggerer makes for the renders "
                    "it waits on. The account's quotas are shared by every triggerer, worker "
                    "and console in the region: divide them among your triggerers."
                ),
                "options": {
                    option: {
                        "description": description,
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "20",
                        "default": str(default),
                    }
                    for option, (default, description) in READ_RATE_OPTIONS.items()
                },
            }
        },
    }
